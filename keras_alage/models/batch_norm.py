"""Batch normalisation through TensorFlow's fused kernel.

Keras 3 computes `BatchNormalization` from elementwise ops on every backend; on TensorFlow
its backward pass is then Mul, Tile, Sum and SquaredDifference over whole feature maps: 12%
of the AL-ResNet-34 training step's op time at 224 px on a CPU (BUILD_NOTES.md). TensorFlow's
`FusedBatchNormV3` (oneDNN on CPUs, cuDNN on GPUs, lowered by XLA) does the same in one
kernel each way.
"""

import keras
import tensorflow as tf
from keras import layers

PACKAGE = "keras_alage"


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedBatchNormalization(layers.BatchNormalization):
    """Keras's `BatchNormalization` (same weights, names and config) on the fused kernel.

    Falls back to Keras's own computation where the kernel does not apply (other backends,
    masks, renormalisation, non-NHWC or non-float32 inputs). One difference from Keras: the
    kernel averages the Bessel-corrected batch variance (x n/(n-1), n = batch x height x
    width values per channel) into `moving_variance`, as Torch and tf.keras 2 did.
    """

    def _fusable(self, inputs, mask) -> bool:
        return (
            keras.backend.backend() == "tensorflow"
            and mask is None
            and not self.renorm
            and self.scale
            and self.center
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and inputs.dtype == tf.float32
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        is_training = bool(training) and self.trainable
        outputs, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=tf.convert_to_tensor(self.gamma),
            offset=tf.convert_to_tensor(self.beta),
            mean=tf.convert_to_tensor(self.moving_mean),
            variance=tf.convert_to_tensor(self.moving_variance),
            epsilon=self.epsilon,
            exponential_avg_factor=(1.0 - self.momentum) if is_training else 1.0,
            data_format="NHWC",
            is_training=is_training,
        )
        if is_training:  # with exponential_avg_factor < 1 the kernel returns the new averages
            self.moving_mean.assign(mean)
            self.moving_variance.assign(variance)
        return outputs


def with_keras_batch_norm(model: keras.Model) -> keras.Model:
    """A copy of `model` (nested models included) with Keras's own `BatchNormalization` in
    place of the fused layers and the same weights: the reference the fused kernel is
    measured against (benchmarks/suite.py --batch_norm_reference)."""

    def clone(layer):
        if isinstance(layer, FusedBatchNormalization):
            return layers.BatchNormalization.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy
