"""Carried memory (the paper's: state from one test image to the next) against a reset state, paired."""

import numpy as np
import pytest

from keras_alage.evaluation import memory
from keras_alage.models import age_model, attention
from keras_alage.models.age_model import ModelConfig

CONFIG = ModelConfig(age_classes="fgnet", lstm_units=6, crop_size=(3, 3), box="movable", max_box_size=0.8)


@pytest.fixture(scope="module")
def tiny():
    model = age_model.build_map_model(CONFIG, (5, 5, 8), name="tiny")
    rng = np.random.default_rng(3)
    lstm = model.get_layer("attention_lstm")
    # a strong recurrent pull, so the state an image leaves changes the next image's box
    lstm.cell.set_weights([w + rng.normal(0, 0.8, w.shape).astype(w.dtype) for w in lstm.cell.get_weights()])
    location = model.get_layer("attention_location")
    kernel, bias = location.get_weights()
    location.set_weights([rng.normal(0, 1.5, kernel.shape).astype(kernel.dtype), bias])
    maps = rng.normal(0, 1, (7, 5, 5, 8)).astype("float32")
    maps[:, :2] += 2.0 * rng.normal(0, 1, (7, 1, 1, 8)).astype("float32")  # where the box looks matters
    return model, maps


def batches(maps, size=3):
    return [maps[i : i + size] for i in range(0, len(maps), size)]


def test_carrying_changes_the_answer_and_equals_stepping_the_memory_image_by_image(tiny):
    model, maps = tiny
    attention.reset_attention_state(model)
    result = memory.memory_predictions(model, batches(maps))
    carried, reset = result["carried"]["age"], result["reset"]["age"]
    assert carried.shape == reset.shape == (7,)
    assert carried[0] == pytest.approx(reset[0], abs=1e-5)  # the first image sees the starting state
    assert np.abs(carried[1:] - reset[1:]).max() > 1e-3  # later images see what came before
    # the reference: a training call of one image carries its own state (the layer's rule)
    attention.reset_attention_state(model)
    expected = []
    for i in range(len(maps)):
        expected.append(float(model(maps[i : i + 1], training=False)["age"][0]))
        model.get_layer("attention_lstm")(model.get_layer("global_pool")(model.get_layer("backbone")(maps[i : i + 1])),
                                          training=True)
    np.testing.assert_allclose(carried, expected, atol=1e-4)
    # reset answers are the product's: every image from the same state, batch by batch
    attention.reset_attention_state(model)
    np.testing.assert_allclose(reset, model(maps, training=False)["age"].numpy(), atol=1e-5)


def test_the_order_is_part_of_the_answer_and_the_state_is_put_back(tiny):
    model, maps = tiny
    attention.reset_attention_state(model)
    lstm = model.get_layer("attention_lstm")
    lstm.hidden_state.assign(np.full((1, 6), 1.0, np.float32))
    stored = memory.memory_predictions(model, batches(maps))
    forward = stored["carried"]["age"]
    backward = memory.memory_predictions(model, batches(maps[::-1]))["carried"]["age"][::-1]
    assert np.abs(forward - backward).max() > 1e-3
    np.testing.assert_allclose(attention.attention_state(model)[0], 1.0)  # stored state kept
    from_zero = memory.memory_predictions(model, batches(maps), start_from_zero=True)
    # the start is the stored state unless told
    assert np.abs(from_zero["reset"]["age"] - stored["reset"]["age"]).max() > 1e-3


def test_paired_errors_and_orders():
    predictions = {"carried": {"age": np.array([10.0, 20.0])}, "reset": {"age": np.array([12.0, 19.0])}}
    paired = memory.paired_errors(predictions, [11.0, 21.0])
    np.testing.assert_allclose(paired["carried_minus_reset"], [0.0, -1.0])
    grouped = memory.paired_errors(predictions, None, low=np.array([3.0, 20.0]), high=np.array([10.0, 30.0]))
    np.testing.assert_allclose(grouped["carried"], [0.0, 0.0])
    np.testing.assert_allclose(grouped["reset"], [2.0, 1.0])
    assert list(memory.fixed_order(["b", "a", "c"])) == [1, 0, 2]
    assert sorted(memory.fixed_order(["b", "a", "c"], seed=1)) == [0, 1, 2]


def test_a_model_without_one_attention_lstm_is_refused():
    import keras

    inputs = keras.Input((4,))
    with pytest.raises(ValueError, match="has 0 attention LSTMs"):
        memory.memory_predictions(keras.Model(inputs, {"age": keras.layers.Dense(1)(inputs)}), [np.zeros((1, 4))])
