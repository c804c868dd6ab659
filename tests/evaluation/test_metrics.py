import math

import numpy as np
import pytest

from keras_alage.evaluation import metrics, scoring
from keras_alage.models import heads

PRED = [10.0, 22.0, 35.0, 61.0, 4.0]
TRUE = [12.0, 20.0, 29.0, 70.0, 4.5]  # errors 2, 2, 6, 9, 0.5


def test_mae_and_cumulative_score_by_hand():
    assert metrics.mean_absolute_error(PRED, TRUE) == pytest.approx(19.5 / 5)
    assert metrics.cumulative_score(PRED, TRUE, 5) == pytest.approx(3 / 5)
    assert metrics.cumulative_score(PRED, TRUE, 6) == pytest.approx(4 / 5)  # "at most" 6


def test_errors_outside_an_ages_bounds_by_hand():
    # a group 30-40: 5 years below it, inside, 5 above, on its ends; an exact age (low == high): |error|
    assert metrics.errors_outside([25.0, 35.0, 45.0, 30.0, 40.0], [30.0] * 5, [40.0] * 5).tolist() == [
        5.0, 0.0, 5.0, 0.0, 0.0]
    assert metrics.errors_outside(PRED, TRUE, TRUE).tolist() == pytest.approx([2.0, 2.0, 6.0, 9.0, 0.5])


def test_epsilon_error_by_hand():
    value = metrics.epsilon_error([20.0, 30.0], [20.0, 34.0], [3.0, 4.0])
    assert value == pytest.approx((0.0 + (1 - math.exp(-16 / 32))) / 2)
    with pytest.raises(ValueError, match="positive label standard deviation"):
        metrics.epsilon_error([1.0], [1.0], [0.0])


def test_group_accuracies_by_hand():
    assert metrics.exact_accuracy([0, 3, 5, 7], [0, 4, 5, 5]) == pytest.approx(0.5)
    assert metrics.one_off_accuracy([0, 3, 5, 7], [0, 4, 5, 5]) == pytest.approx(0.75)


def test_per_band_mae_by_hand():
    bands = metrics.per_band_mae(PRED, TRUE)
    assert bands["0-9"] == {"mae": 0.5, "count": 1}
    assert bands["10-19"] == {"mae": 2.0, "count": 1}
    assert bands["60+"] == {"mae": 9.0, "count": 1}
    assert bands["30-39"]["count"] == 0 and math.isnan(bands["30-39"]["mae"])


def test_expected_age_and_mismatch():
    np.testing.assert_allclose(metrics.expected_age([[0.2, 0.8]], [10, 20]), [18.0])
    with pytest.raises(ValueError, match="3 classes but class_ages has 2"):
        metrics.expected_age([[0.2, 0.3, 0.5]], [10, 20])
    with pytest.raises(ValueError, match="2 predictions for 3 labels"):
        metrics.mean_absolute_error([1, 2], [1, 2, 3])


def test_keras_metrics_match_the_numpy_ones():
    ages = [0.0, 10.0, 20.0, 30.0]
    probs = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.25, 0.25]], "float32")
    labels = np.array([1, 3, 0])  # true ages 10, 30, 0; expected 10, 25, 15
    mae = metrics.ExpectedAgeMAE(ages)
    mae.update_state(labels, probs)
    assert float(mae.result()) == pytest.approx((0 + 5 + 15) / 3)
    cs = metrics.CumulativeScore(ages, threshold=5)
    cs.update_state(labels, probs)
    assert float(cs.result()) == pytest.approx(2 / 3)
    one_off = metrics.OneOffAccuracy()
    one_off.update_state(np.array([1, 0, 3]), probs)  # arg-max 1, 2, 0
    assert float(one_off.result()) == pytest.approx(1 / 3)


def test_subject_bootstrap_resamples_people_not_photos():
    # Ten photos of a person with error 0 and one of another with error 10: drawing people,
    # both draws are the second person a quarter of the time, so the interval reaches 10.
    errors = [0.0] * 10 + [10.0]
    subjects = ["a"] * 10 + ["b"]
    mean, low, high = metrics.subject_bootstrap(errors, subjects, resamples=4000)
    assert mean == pytest.approx(10 / 11)
    assert low == 0.0 and high == 10.0
    constant = metrics.subject_bootstrap([3.0] * 6, list("abcdef"))
    assert constant == (3.0, 3.0, 3.0)
    with pytest.raises(ValueError, match="one subject per value"):
        metrics.subject_bootstrap([1.0, 2.0], ["a"])


def test_predictors_are_compared_on_the_photos_all_of_them_answered():
    true = {"p1": 10.0, "p2": 20.0, "p3": 30.0, "p4": 40.0}
    subjects = {"p1": "a", "p2": "a", "p3": "b", "p4": "c"}
    predictions = {"ours": {"p1": 12.0, "p2": 20.0, "p3": 33.0, "p4": 40.0},
                   "peer": {"p1": 15.0, "p2": None, "p3": 30.0, "p4": 50.0}}
    table = scoring.compare_predictors(true, subjects, predictions, reference="peer")
    assert table["common"] == 3 and table["predictors"]["peer"]["answered"] == 3
    ours = table["predictors"]["ours"]
    assert ours["mae"] == pytest.approx((2 + 3 + 0) / 3)
    assert ours["diff_to_reference"] == pytest.approx(((2 - 5) + (3 - 0) + (0 - 10)) / 3)
    assert ours["cs5"] == 1.0 and table["predictors"]["peer"]["cs5"] == pytest.approx(2 / 3)
    assert "| ours | 4 |" in scoring.predictors_markdown(table, "t")


def test_rank_correlation_reads_monotone_relations_and_ties():
    assert metrics.rank_correlation([1, 2, 3, 4], [10, 20, 30, 1000]) == pytest.approx(1.0)
    assert metrics.rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert metrics.rank_correlation([1, 1, 2, 2], [1, 2, 3, 4]) == pytest.approx(0.894427, abs=1e-5)


def test_local_weight_sweep_scores_each_combination_of_the_two_heads():
    ages = np.arange(0.0, 31.0)
    one_hot = lambda age: np.eye(len(ages))[[age]]  # noqa: E731
    predictions = {"global": one_hot(10), "local": one_hot(20), "age": np.array([12.0])}
    # P = (P_g + w P_l) / (1 + w): expected age (10 + 20 w) / (1 + w): 10, 12, 15 for w = 0, 0.25, 1.
    sweep = scoring.local_weight_sweep(predictions, ages, [0, 0.25, 1])
    assert sweep == pytest.approx({"0": 2.0, "0.25": 0.0, "1": 3.0}, abs=1e-9)
    with pytest.raises(ValueError, match="at least 0"):
        scoring.local_weight_sweep(predictions, ages, [-1])


def test_combine_heads_is_the_models_combination_layer_in_numpy():
    rng = np.random.default_rng(0)
    global_, local = (rng.dirichlet(np.ones(6), 4).astype(np.float32) for _ in range(2))
    for weight in (0.0, 0.5, 3.0):
        layer = heads.CombinePredictions(local_weight=weight)
        np.testing.assert_allclose(metrics.combine_heads(global_, local, weight), np.asarray(layer([global_, local])),
                                   atol=1e-6)
    ages = np.array([10.0, 40.0])  # linear: the expected ages combine alike
    assert metrics.combine_heads(ages, ages + 6.0, 0.5) == pytest.approx([12.0, 42.0])
    with pytest.raises(ValueError, match="at least 0"):
        metrics.combine_heads(global_, local, -0.5)
