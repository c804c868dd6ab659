"""Label shift: answers for a population whose ages are distributed unlike the training faces'.

A model's class probabilities carry the age distribution (prior) of its training faces: a model
trained where most people are 20-60 reads a crowd of children as older than they are. When many
faces of one population are answered together, their prior can be estimated from the answers
alone, without labels, and the answers re-weighted to it: the EM procedure of Saerens, Latinne and
Decaestecker ("Adjusting the outputs of a classifier to new a priori probabilities", Neural
Computation 14(1), 2002). With q_i the adapted answer of face i and pi_s the training prior,

    q_i(y) ∝ p_i(y) pi_t(y) / pi_s(y),        pi_t(y) = mean_i q_i(y),

iterated from pi_t = pi_s. `smoothing` (in classes) blurs pi_t after each step, because a prior
over 101 ages estimated from a few hundred faces is ragged.

The source prior is the model's own: the mean of its answers over its training faces
(`source_prior`), which also covers a global head trained on data we do not have (dlib's).
"""

from typing import Tuple

import numpy as np

FLOOR = 1e-8  # no class's prior is exactly zero
# The fewest faces a prior is estimated from: the smallest population benchmarks/prior_shift.py
# validated (100 faces: -0.38 years on average over its shifted populations, +0.09 without shift).
MIN_FACES = 100


def source_prior(probs: np.ndarray) -> np.ndarray:
    """The model's prior: its mean answer [classes] over its training faces' answers [faces, classes]."""
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or not len(probs):
        raise ValueError(f"source_prior needs answers of shape [faces, classes]; received {probs.shape}.")
    prior = np.maximum(probs.mean(axis=0), FLOOR)
    return prior / prior.sum()


def smooth(prior: np.ndarray, sigma: float) -> np.ndarray:
    """`prior` blurred by a Gaussian of `sigma` classes (no blur at 0), mass kept at the ends."""
    if sigma <= 0:
        return prior
    offsets = np.arange(-int(np.ceil(4 * sigma)), int(np.ceil(4 * sigma)) + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    padded = np.pad(prior, len(offsets) // 2, mode="reflect")
    blurred = np.convolve(padded, kernel / kernel.sum(), mode="valid")
    return blurred / blurred.sum()


def reweight(probs: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Answers [faces, classes] moved from the `source` prior to the `target` prior."""
    weighted = np.asarray(probs, np.float64) * (np.maximum(target, FLOOR) / np.maximum(source, FLOOR))
    return weighted / np.maximum(weighted.sum(axis=1, keepdims=True), 1e-300)


def estimate_target_prior(probs: np.ndarray, source: np.ndarray, smoothing: float = 0.0,
                          iterations: int = 500, tolerance: float = 1e-7) -> Tuple[np.ndarray, int]:
    """(the faces' prior estimated by EM, iterations used); `probs` [faces, classes] under `source`."""
    probs = np.asarray(probs, np.float64)
    source = np.asarray(source, np.float64)
    if probs.ndim != 2 or probs.shape[1] != source.shape[0]:
        raise ValueError(f"answers {probs.shape} and a prior over {source.shape[0]} classes do not match.")
    if not len(probs):
        raise ValueError("no face to estimate a prior from.")
    target = source.copy()
    for step in range(1, iterations + 1):
        updated = smooth(reweight(probs, source, target).mean(axis=0), smoothing)
        change = np.abs(updated - target).sum()
        target = updated
        if change < tolerance:
            return target, step
    return target, iterations


def adapt(probs: np.ndarray, source: np.ndarray, smoothing: float = 0.0) -> Tuple[np.ndarray, np.ndarray]:
    """(answers re-weighted to the faces' own estimated prior, that prior)."""
    target, _ = estimate_target_prior(probs, source, smoothing)
    return reweight(probs, source, target), target
