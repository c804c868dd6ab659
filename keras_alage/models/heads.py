"""Prediction heads: class probabilities, their combination and the expected age (DEX)."""

from typing import Sequence

import keras
import tensorflow as tf
from keras import layers

PACKAGE = "keras_alage"
HEADS = ("global", "local")


def check_heads(heads) -> tuple:
    """Validated head names, in canonical order; the global head must be among them."""
    unknown = set(heads) - set(HEADS)
    heads = tuple(h for h in HEADS if h in heads)
    if "global" not in heads or unknown:
        raise ValueError(f"trained heads must include 'global' and be among {HEADS}; received {heads!r}.")
    return heads


def apply_softmax_head(features, num_classes: int, name: str):
    """Fully connected layer + softmax over the age classes, in float32 under mixed
    precision (probabilities near 0 and the expected age need the precision)."""
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name=name)(features)


def age_std(probs, class_ages):
    """The standard deviation of the predicted age distribution, in years, per row: how sure
    the model is. An expected age hides whether the distribution behind it is sharp or flat."""
    ages = tf.constant([float(a) for a in class_ages], tf.float32)
    probs = tf.cast(probs, tf.float32)
    mean = tf.linalg.matvec(probs, ages)
    variance = tf.reduce_sum(probs * tf.square(ages - mean[:, None]), axis=-1)
    return tf.sqrt(tf.maximum(variance, 0.0))


@keras.saving.register_keras_serializable(package=PACKAGE)
class CombinePredictions(layers.Layer):
    """P_final = (P_global + lambda * P_local) / (1 + lambda): Eq. 5, kept a distribution.

    The paper weighs the two predictions 1 and 0.5 and calls the result their weighted
    average; dividing by 1 + lambda keeps it summing to one, which leaves the arg-max
    unchanged and makes the expected age a proper expectation.

    `trained_heads` records which heads the model's training stages trained: a model
    trained through the global stage only answers with P_global, so an untrained (or, after
    the backbone moved, stale) local head never reaches an answer.
    """

    def __init__(self, local_weight: float = 0.5, trained_heads=HEADS, **kwargs):
        super().__init__(**kwargs)
        if local_weight < 0:
            raise ValueError(f"local_weight must be >= 0; received {local_weight}.")
        self.local_weight = float(local_weight)
        self.trained_heads = check_heads(trained_heads)

    def call(self, inputs):
        global_probs, local_probs = inputs
        if "local" not in self.trained_heads:
            return global_probs
        return (global_probs + self.local_weight * local_probs) / (1.0 + self.local_weight)

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update({"local_weight": self.local_weight, "trained_heads": list(self.trained_heads)})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class ExpectedAge(layers.Layer):
    """Deep EXpectation: sum_k p_k * age_k, one age in years per image ([batch])."""

    def __init__(self, class_ages: Sequence[float], **kwargs):
        super().__init__(**kwargs)
        self.class_ages = [float(a) for a in class_ages]
        if len(self.class_ages) < 2:
            raise ValueError(f"ExpectedAge needs at least 2 class ages; received {self.class_ages}.")

    def call(self, probs):
        ages = tf.constant(self.class_ages, dtype=probs.dtype)
        return tf.reduce_sum(probs * ages, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape[:-1]

    def get_config(self):
        config = super().get_config()
        config.update({"class_ages": self.class_ages})
        return config
