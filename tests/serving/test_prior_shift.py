"""Label shift (keras_alage/prior_shift.py): the EM prior estimate and the re-weighted answers."""

import numpy as np
import pytest

from keras_alage.serving import prior_shift


def _population(prior, count, rng, noise=0.5, source=None):
    """Faces drawn under `prior`, each seen as its class plus Gaussian noise; each answer is the
    exact posterior under the training prior `source` (uniform by default): a calibrated model."""
    labels = rng.choice(len(prior), size=count, p=prior)
    seen = labels + rng.normal(0.0, noise, count)
    likelihood = np.exp(-0.5 * ((seen[:, None] - np.arange(len(prior))[None, :]) / noise) ** 2)
    posterior = likelihood * (np.full(len(prior), 1.0) if source is None else source)
    return labels, posterior / posterior.sum(axis=1, keepdims=True)


def test_em_recovers_a_shifted_prior_and_the_answers_improve():
    rng = np.random.default_rng(0)
    source = np.full(5, 0.2)
    target = np.array([0.6, 0.25, 0.1, 0.04, 0.01])
    labels, probs = _population(target, 4000, rng)
    estimate, steps = prior_shift.estimate_target_prior(probs, source)
    assert steps < 500
    np.testing.assert_allclose(estimate, target, atol=0.04)
    adapted, found = prior_shift.adapt(probs, source)
    np.testing.assert_allclose(found, estimate)
    accuracy = lambda p: float(np.mean(p.argmax(axis=1) == labels))  # noqa: E731
    assert accuracy(adapted) > accuracy(probs) + 0.015  # 0.77 -> 0.81 at this seed


def test_no_shift_leaves_the_prior_where_it_was():
    rng = np.random.default_rng(1)
    source = np.full(4, 0.25)
    _, probs = _population(source, 4000, rng)
    estimate, _ = prior_shift.estimate_target_prior(probs, source)
    np.testing.assert_allclose(estimate, source, atol=0.04)


def test_reweighting_by_hand_and_the_source_prior_as_the_mean_answer():
    probs = np.array([[0.5, 0.5], [0.2, 0.8]])
    moved = prior_shift.reweight(probs, np.array([0.5, 0.5]), np.array([0.75, 0.25]))
    np.testing.assert_allclose(moved, [[0.75, 0.25], [0.15 / 0.35, 0.2 / 0.35]])
    np.testing.assert_allclose(prior_shift.source_prior(probs), [0.35, 0.65])
    with pytest.raises(ValueError, match="do not match"):
        prior_shift.estimate_target_prior(probs, np.array([0.2, 0.3, 0.5]))


def test_smoothing_keeps_mass_and_spreads_a_spike():
    spike = np.zeros(21)
    spike[10] = 1.0
    blurred = prior_shift.smooth(spike, 3.0)
    assert blurred.sum() == pytest.approx(1.0) and blurred[10] < 0.2 and blurred[7] > 0.05
    np.testing.assert_array_equal(prior_shift.smooth(spike, 0.0), spike)
    edge = np.zeros(21)
    edge[0] = 1.0
    assert prior_shift.smooth(edge, 3.0).sum() == pytest.approx(1.0)


def test_the_training_prior_is_divided_out():
    """Answers of a model trained where the middle class was common: EM from that prior finds the
    population's own (even) mix, and the model's own population gives back its prior."""
    rng = np.random.default_rng(2)
    source = np.array([0.1, 0.2, 0.4, 0.2, 0.1])
    _, probs = _population(np.full(5, 0.2), 4000, rng, source=source)
    np.testing.assert_allclose(prior_shift.estimate_target_prior(probs, source)[0], np.full(5, 0.2), atol=0.04)
    _, own = _population(source, 4000, rng, source=source)
    np.testing.assert_allclose(prior_shift.estimate_target_prior(own, source)[0], source, atol=0.04)
