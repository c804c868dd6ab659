import numpy as np
import pytest
import tensorflow as tf
from keras import layers

from keras_alage.models import attention
from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.models.batch_norm import FusedBatchNormalization, with_keras_batch_norm


def _pair(channels=8, seed=0):
    rng = np.random.default_rng(seed)
    reference = layers.BatchNormalization(epsilon=1e-5, momentum=0.9)
    fused = FusedBatchNormalization(epsilon=1e-5, momentum=0.9)
    for layer in (reference, fused):
        layer.build((None, 5, 5, channels))
    values = [rng.normal(1, 0.2, channels), rng.normal(0, 0.2, channels), rng.normal(0, 1, channels),
              rng.uniform(0.5, 2, channels)]
    for layer in (reference, fused):
        layer.set_weights([v.astype("float32") for v in values])
    return reference, fused


def _run(layer, x, training):
    weights = tf.range(1, 9, dtype=tf.float32)  # a loss that weighs channels differently
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(tf.square(layer(x, training=training)) * weights)
    grads = tape.gradient(loss, [x, layer.gamma.value, layer.beta.value])
    return [g.numpy() for g in grads]


def _assert_same(fused, reference, x, training):
    np.testing.assert_allclose(fused(x, training=training), reference(x, training=training), atol=1e-5)
    for got, expected in zip(_run(fused, x, training), _run(reference, x, training)):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_training_matches_keras_outputs_gradients_and_moving_mean():
    reference, fused = _pair()
    x = tf.constant(np.random.default_rng(1).normal(2, 3, (4, 5, 5, 8)).astype("float32"))
    _assert_same(fused, reference, x, True)
    reference, fused = _pair()
    before = reference.moving_variance.numpy()
    reference(x, training=True), fused(x, training=True)
    np.testing.assert_allclose(fused.moving_mean, reference.moving_mean, atol=1e-6)
    # The fused kernel averages the Bessel-corrected variance in (n = 4 * 5 * 5 values per channel).
    batch_variance = (reference.moving_variance.numpy() - 0.9 * before) / 0.1
    np.testing.assert_allclose(fused.moving_variance, 0.9 * before + 0.1 * batch_variance * 100 / 99, rtol=1e-5)


def test_inference_and_a_frozen_layer_use_the_moving_statistics():
    reference, fused = _pair()
    x = tf.constant(np.random.default_rng(2).normal(2, 3, (3, 5, 5, 8)).astype("float32"))
    _assert_same(fused, reference, x, False)
    fused.trainable = False  # a frozen backbone (the attention stage) keeps its statistics
    before = fused.moving_mean.numpy()
    np.testing.assert_allclose(fused(x, training=True), reference(x, training=False), atol=1e-5)
    np.testing.assert_array_equal(fused.moving_mean, before)


@pytest.mark.parametrize("shape,dtype", [((4, 8), "float32"), ((2, 5, 5, 8), "float16")])
def test_inputs_the_kernel_does_not_take_fall_back_to_keras(shape, dtype):
    channels = shape[-1]
    reference = layers.BatchNormalization(dtype=dtype)
    fused = FusedBatchNormalization(dtype=dtype)
    x = tf.constant(np.random.default_rng(3).normal(size=shape), dtype=dtype)
    np.testing.assert_allclose(np.asarray(fused(x, training=True), "float32"),
                               np.asarray(reference(x, training=True), "float32"), atol=1e-2)
    assert fused.moving_mean.shape == (channels,)


def test_a_model_copied_with_keras_batch_norm_computes_the_same_function():
    model = build_age_model(ModelConfig(depth=18, input_size=32, age_classes="fgnet"))
    copy = with_keras_batch_norm(model)
    kinds = {type(layer).__name__ for layer in copy.get_layer("backbone").layers}
    assert "BatchNormalization" in kinds and "FusedBatchNormalization" not in kinds
    for m in (model, copy):
        attention.freeze_attention_state(m)
    x = np.random.default_rng(4).normal(size=(2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(copy(x, training=False)["probs"], model(x, training=False)["probs"], atol=1e-5)
