"""Age-estimation metrics: MAE, years outside an age's bounds, CS@k, epsilon-error, group accuracy, per-band MAE.

The functions take numpy-compatible arrays and return Python floats, for evaluation
reports; the Keras metrics wrap the ones that make sense per training batch.
"""

from typing import Dict, Sequence

import keras
import numpy as np

PACKAGE = "keras_alage"
DEFAULT_BAND_EDGES = (0, 10, 20, 30, 40, 50, 60)


def expected_age(probs, class_ages) -> np.ndarray:
    """DEX: sum_k p_k * age_k for each row of `probs` ([n, classes])."""
    probs = np.asarray(probs, dtype=np.float64)
    class_ages = np.asarray(class_ages, dtype=np.float64)
    if probs.shape[-1] != class_ages.shape[0]:
        raise ValueError(
            f"probs have {probs.shape[-1]} classes but class_ages has {class_ages.shape[0]}."
        )
    return probs @ class_ages


def _pair(predicted, true):
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1)
    true = np.asarray(true, dtype=np.float64).reshape(-1)
    if predicted.shape != true.shape:
        raise ValueError(f"{predicted.shape[0]} predictions for {true.shape[0]} labels.")
    if predicted.size == 0:
        raise ValueError("No predictions to score.")
    return predicted, true


def mean_absolute_error(predicted_ages, true_ages) -> float:
    """MAE in years (Eq. 6)."""
    predicted, true = _pair(predicted_ages, true_ages)
    return float(np.mean(np.abs(predicted - true)))


def errors_outside(predicted, low, high) -> np.ndarray:
    """Years each prediction lies outside its true age's bounds [low, high] (0 inside): the absolute
    error where the truth is an exact age (low == high), the distance to the group where it is one."""
    predicted = np.asarray(predicted, np.float64)
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    return np.maximum(low - predicted, 0.0) + np.maximum(predicted - high, 0.0)


def combine_heads(global_, local, local_weight: float) -> np.ndarray:
    """(global + w local) / (1 + w): the paper's Eq. 5 normalised (`heads.CombinePredictions`), on
    the heads' probabilities or, since it is linear, on their expected ages."""
    if local_weight < 0:
        raise ValueError(f"local weights must be at least 0; received {local_weight}.")
    return (np.asarray(global_) + local_weight * np.asarray(local)) / (1.0 + local_weight)


def cumulative_score(predicted_ages, true_ages, threshold: float = 5.0) -> float:
    """CS@threshold: fraction of images whose absolute error is at most `threshold` years."""
    predicted, true = _pair(predicted_ages, true_ages)
    return float(np.mean(np.abs(predicted - true) <= threshold))


def epsilon_error(predicted_ages, mean_ages, std_ages) -> float:
    """ChaLearn LAP epsilon-error (Eq. 7): mean of 1 - exp(-(x - mu)^2 / (2 sigma^2))."""
    predicted, mean = _pair(predicted_ages, mean_ages)
    _, std = _pair(predicted_ages, std_ages)
    if np.any(std <= 0):
        raise ValueError("epsilon_error needs a positive label standard deviation for every image.")
    return float(np.mean(1.0 - np.exp(-((predicted - mean) ** 2) / (2.0 * std**2))))


def exact_accuracy(predicted_groups, true_groups) -> float:
    """Fraction of images in the right age group (Adience)."""
    predicted, true = _pair(predicted_groups, true_groups)
    return float(np.mean(predicted == true))


def one_off_accuracy(predicted_groups, true_groups) -> float:
    """Fraction of images in the right or an adjacent age group (Adience 1-off)."""
    predicted, true = _pair(predicted_groups, true_groups)
    return float(np.mean(np.abs(predicted - true) <= 1))


def band_label(low: float, high) -> str:
    return f"{low:g}+" if high is None else f"{low:g}-{high - 1:g}"


def per_band_mae(
    predicted_ages, true_ages, edges: Sequence[float] = DEFAULT_BAND_EDGES
) -> Dict[str, Dict[str, float]]:
    """MAE per true-age band: {"0-9": {"mae": ..., "count": ...}, ..., "60+": ...}.

    Bands are [edges[i], edges[i+1]) and the last is open-ended; empty bands are
    reported with count 0 and mae NaN so that tables keep their columns.
    """
    predicted, true = _pair(predicted_ages, true_ages)
    edges = list(edges)
    if any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"Band edges must increase strictly; received {edges}.")
    result = {}
    for i, low in enumerate(edges):
        high = edges[i + 1] if i + 1 < len(edges) else None
        mask = true >= low if high is None else (true >= low) & (true < high)
        errors = np.abs(predicted[mask] - true[mask])
        result[band_label(low, high)] = {
            "mae": float(errors.mean()) if errors.size else float("nan"),
            "count": int(errors.size),
        }
    return result


# --- Keras metrics on (integer class labels, class probabilities) -------------------


def _expected_age_tensor(probs, class_ages):
    return keras.ops.sum(probs * keras.ops.convert_to_tensor(class_ages, probs.dtype), axis=-1)


def _label_age(labels, class_ages, dtype):
    labels = keras.ops.cast(keras.ops.reshape(labels, (-1,)), "int32")
    return keras.ops.take(keras.ops.convert_to_tensor(class_ages, dtype), labels)


class _ExpectedAgeMetric(keras.metrics.Mean):
    """Averages a per-image score of |expected age - label age| over the batches."""

    def __init__(self, class_ages, name, **kwargs):
        super().__init__(name=name, **kwargs)
        self.class_ages = [float(a) for a in class_ages]

    def score(self, errors):
        raise NotImplementedError

    def update_state(self, y_true, y_pred, sample_weight=None):
        errors = keras.ops.abs(
            _expected_age_tensor(y_pred, self.class_ages)
            - _label_age(y_true, self.class_ages, y_pred.dtype)
        )
        return super().update_state(self.score(errors), sample_weight=sample_weight)

    def get_config(self):
        return {**super().get_config(), "class_ages": self.class_ages}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ExpectedAgeMAE(_ExpectedAgeMetric):
    """Mean absolute error of the expected age, from class labels and probabilities."""

    def __init__(self, class_ages, name="mae", **kwargs):
        super().__init__(class_ages, name=name, **kwargs)

    def score(self, errors):
        return errors


@keras.saving.register_keras_serializable(package=PACKAGE)
class CumulativeScore(_ExpectedAgeMetric):
    """CS@threshold of the expected age, from class labels and probabilities."""

    def __init__(self, class_ages, threshold=5.0, name=None, **kwargs):
        super().__init__(class_ages, name=name or f"cs{threshold:g}", **kwargs)
        self.threshold = float(threshold)

    def score(self, errors):
        return keras.ops.cast(errors <= self.threshold, errors.dtype)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@keras.saving.register_keras_serializable(package=PACKAGE)
class OneOffAccuracy(keras.metrics.Mean):
    """Arg-max class within one class of the label (Adience 1-off accuracy)."""

    def __init__(self, name="one_off_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        predicted = keras.ops.cast(keras.ops.argmax(y_pred, axis=-1), "int32")
        true = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        hit = keras.ops.cast(keras.ops.abs(predicted - true) <= 1, "float32")
        return super().update_state(hit, sample_weight=sample_weight)


def subject_bootstrap(values, subjects, resamples: int = 2000, seed: int = 0, level: float = 0.95):
    """(mean, low, high): the mean of per-image `values` (absolute errors, or paired differences
    of two models' errors) with a percentile interval from resampling *subjects* with
    replacement, so that one person's many photos count as one draw, not as independent ones."""
    values = np.asarray(values, np.float64)
    subjects = np.asarray(subjects)
    if values.shape != subjects.shape or values.size == 0:
        raise ValueError(f"need one subject per value; received {values.shape} values, {subjects.shape} subjects.")
    _, index = np.unique(subjects, return_inverse=True)
    sums = np.bincount(index, weights=values)
    counts = np.bincount(index).astype(np.float64)
    draws = np.random.default_rng(seed).integers(0, len(sums), size=(resamples, len(sums)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(values.mean()), float(low), float(high)


def rank_correlation(x, y) -> float:
    """Spearman's rank correlation (ties get their mean rank): does a larger x go with a larger y?"""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.size < 3:
        raise ValueError(f"need two equal-length series of at least 3 values; received {x.shape} and {y.shape}.")

    def ranks(values):
        order = np.argsort(values, kind="mergesort")
        ranked = np.empty(len(values))
        ranked[order] = np.arange(len(values), dtype=np.float64)
        for value in np.unique(values):  # ties: their mean rank
            tied = values == value
            ranked[tied] = ranked[tied].mean()
        return ranked

    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])
