"""Training stages of the paper: first the global network, then the attention branch.

"global": backbone and global head learn from the global prediction's cross-entropy;
the attention branch is frozen. "attention": backbone and global head are frozen
(their batch norms then run in inference mode, so their statistics stay put too) and
only the LSTM, the location network and the local head learn, from the local
prediction's cross-entropy, as in section III-C.

Two more stages train one head on the frozen network, as controls for the attention branch
(BUILD_NOTES.md, "What the attention branch adds"): "global_head" (the global head alone, on
the global prediction's loss) and "local_head" (the local head alone, with the LSTM and the
location network frozen, e.g. on a fixed box).
"""

import dataclasses
from typing import Dict, Tuple

import keras
import tensorflow as tf

from keras_alage.models import attention
from keras_alage.training.options import STAGES

GLOBAL_LAYERS = ("backbone", "global_head")


@dataclasses.dataclass(frozen=True)
class StageSpec:
    name: str
    trainable_layers: Tuple[str, ...]
    frozen_layers: Tuple[str, ...]
    loss_output: str  # model output the stage's cross-entropy is computed on


def stage_spec(stage: str) -> StageSpec:
    if stage == "global":
        return StageSpec(stage, GLOBAL_LAYERS, attention.ATTENTION_LAYER_NAMES, "global_probs")
    if stage == "attention":
        return StageSpec(stage, attention.ATTENTION_LAYER_NAMES, GLOBAL_LAYERS, "local_probs")
    if stage == "global_head":
        return StageSpec(stage, ("global_head",), ("backbone", *attention.ATTENTION_LAYER_NAMES), "global_probs")
    if stage == "local_head":
        frozen = ("backbone", "global_head", *[n for n in attention.ATTENTION_LAYER_NAMES if n != "local_head"])
        return StageSpec(stage, ("local_head",), frozen, "local_probs")
    raise ValueError(f"Unknown training stage {stage!r}; expected one of {STAGES}.")


def heads_trained_by(stage: str) -> Tuple[str, ...]:
    """Heads that answer after a stage: the global stage moves the backbone under the local
    head, so only the global head is trained, and the global-head stage answers with the
    global head alone; the attention and local-head stages add the local head."""
    stage_spec(stage)
    return ("global",) if stage in ("global", "global_head") else ("global", "local")


def set_training_stage(model: keras.Model, stage: str) -> StageSpec:
    """Sets which parts of an age model train; returns the stage's spec.

    Re-compile (or rebuild a custom loop's variable list) after calling this: Keras
    reads `trainable` when it collects the variables to update.
    """
    spec = stage_spec(stage)
    for name in spec.trainable_layers:
        _layer(model, name).trainable = True
    present = {layer.name for layer in model.layers}
    for name in spec.frozen_layers:  # a part the model lacks (a global-only model's branch) has nothing to freeze
        if name in present:
            model.get_layer(name).trainable = False
    return spec


def freeze_batch_norm(model: keras.Model) -> int:
    """Freezes the backbone's batch norms (after `set_training_stage`, which unfreezes the whole
    backbone): they normalise with their stored statistics in training too and their scale and
    offset stay. Returns how many. A small or different fine-tuning set then cannot pull an
    imported network's normalisation away from what its weights expect."""
    frozen = 0
    for layer in _layer(model, "backbone").layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
            frozen += 1
    return frozen


def _layer(model: keras.Model, name: str) -> keras.layers.Layer:
    try:
        return model.get_layer(name)
    except ValueError:
        raise ValueError(
            f"Model {model.name!r} has no layer {name!r}; build it with keras_alage.models.age_model.build_age_model."
        ) from None


def stage_loss(outputs: Dict[str, tf.Tensor], labels: tf.Tensor, stage: str) -> tf.Tensor:
    """Mean cross-entropy of the stage's prediction against integer class labels."""
    spec = stage_spec(stage)
    return keras.ops.mean(
        keras.losses.sparse_categorical_crossentropy(labels, outputs[spec.loss_output])
    )
