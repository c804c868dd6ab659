"""The attention LSTM's memory as the paper means it: state carried from one test image to the next.

The product answers every image from the same stored state (`attention.CarriedStateLSTM`: inference
never writes it), so the same face gets the same answer whatever came before; a test of "the memory"
under that rule can only find it a constant. Here the two are run side by side, paired:

* "carried": the images in a fixed order, one at a time, each answered from the state the images
  before it left, then the state advanced by that image's own LSTM step (what a training call of one
  image does, `CarriedStateLSTM._carry`);
* "reset": every image answered from the starting state, as the product answers.

Both start from the model's stored state (or zero, `start_from_zero`); the model's state is put back
afterwards. The order is the caller's, and is part of the result: report it.
"""

from typing import Dict, Iterable, Optional

import keras
import numpy as np
import tensorflow as tf

from keras_alage.evaluation import metrics
from keras_alage.models import attention

OUTPUTS = ("age", "global_age", "local_age", "box")
MODES = ("carried", "reset")


def _the_lstm(model: keras.Model) -> attention.CarriedStateLSTM:
    found = attention.carried_state_layers(model)
    if len(found) != 1:
        raise ValueError(f"Model {model.name!r} has {len(found)} attention LSTMs; carried memory needs exactly one.")
    return found[0]


def _state(layer) -> tuple:
    return (np.array(keras.ops.convert_to_numpy(layer.hidden_state)),
            np.array(keras.ops.convert_to_numpy(layer.cell_state)))


def _set_state(layer, hidden, cell) -> None:
    layer.hidden_state.assign(np.asarray(hidden, np.float32).reshape(1, -1))
    layer.cell_state.assign(np.asarray(cell, np.float32).reshape(1, -1))


def memory_predictions(model: keras.Model, images: Iterable, start_from_zero: bool = False,
                       outputs=OUTPUTS) -> Dict[str, Dict[str, np.ndarray]]:
    """{"carried": {output: [n, ...]}, "reset": {...}} for `images` (an iterable of batches [b, ...] in
    the order they are to be seen; the batches are split into single images for "carried").

    Raises ValueError where the model has no attention LSTM or more than one."""
    layer = _the_lstm(model)
    # one call answers an image and gives its LSTM step, S = concat(cell, hidden): the state it leaves
    stepped = keras.Model(model.input, {"answers": {key: model.output[key] for key in outputs}, "step": layer.output})
    stored = _state(layer)
    start = tuple(np.zeros_like(s) for s in stored) if start_from_zero else stored

    @tf.function(reduce_retracing=True)
    def answer(batch):
        out = model(batch, training=False)
        return {key: out[key] for key in outputs}

    @tf.function(reduce_retracing=True)
    def answer_and_carry(one):  # the one image's answers from the current state, which becomes its step's
        out = stepped(one, training=False)
        hidden, cell = attention.CarriedStateLSTM.split_output(out["step"])
        layer.hidden_state.assign(hidden)
        layer.cell_state.assign(cell)
        return out["answers"]

    collected = {mode: {key: [] for key in outputs} for mode in MODES}
    try:
        _set_state(layer, *start)
        for batch in images:
            batch = tf.convert_to_tensor(batch)
            for key, value in answer(batch).items():  # every image of the batch from the same state
                collected["reset"][key].append(value.numpy())
        # reset answers above all came from `start`, so the carried pass starts there too
        for batch in images:
            batch = tf.convert_to_tensor(batch)
            for i in range(int(batch.shape[0])):
                for key, value in answer_and_carry(batch[i : i + 1]).items():
                    collected["carried"][key].append(value.numpy())
    finally:
        _set_state(layer, *stored)
    return {mode: {key: np.concatenate(values) if values else np.zeros((0,)) for key, values in by_key.items()}
            for mode, by_key in collected.items()}


def paired_errors(predictions: Dict[str, Dict[str, np.ndarray]], truth, output: str = "age",
                  low=None, high=None) -> Dict[str, np.ndarray]:
    """Per-image absolute errors of each mode for one output (years outside [low, high] where the
    truth is a group: `metrics.errors_outside`), and their difference carried - reset (negative:
    carrying helps)."""
    def errors(predicted):
        return metrics.errors_outside(predicted, truth if low is None else low, truth if high is None else high)

    carried, reset = errors(predictions["carried"][output]), errors(predictions["reset"][output])
    return {"carried": carried, "reset": reset, "carried_minus_reset": carried - reset}


def fixed_order(keys, seed: Optional[int] = None) -> np.ndarray:
    """An order over items named by `keys`: sorted by key (None), or a seeded permutation of that."""
    order = np.argsort(np.asarray(keys, dtype=object).astype(str), kind="stable")
    if seed is not None:
        order = order[np.random.default_rng(seed).permutation(len(order))]
    return order
