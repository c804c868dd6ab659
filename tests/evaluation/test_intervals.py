"""Split-conformal intervals per predicted-age band: the ranks, the coverage they promise on
exchangeable faces, the bands, and the graph's copy of the table."""

import numpy as np
import pytest
import tensorflow as tf

from keras_alage.evaluation import intervals


def test_offsets_are_the_conformal_ranks():
    # n = 99: floor(100 * 0.05) = 5th and ceil(100 * 0.95) = 95th smallest residual.
    residuals = np.random.default_rng(0).permutation(np.arange(1.0, 100.0))
    assert intervals.conformal_offsets(residuals, 0.9) == (5.0, 95.0)
    # n = 19: the 1st and the 19th, i.e. the extremes.
    assert intervals.conformal_offsets(np.arange(1.0, 20.0), 0.9) == (1.0, 19.0)
    assert intervals.conformal_offsets(np.arange(1.0, 100.0), 0.5) == (25.0, 75.0)


def simulated(rng, n):
    """Ages 0-80 predicted with noise that grows with age and a bias after 40."""
    truth = rng.uniform(0, 80, n)
    predicted = truth + rng.normal(0, 1 + truth / 8, n) - np.where(truth > 40, 3.0, 0.0)
    return predicted, truth


def test_coverage_holds_on_faces_exchangeable_with_the_calibration_faces():
    rng = np.random.default_rng(1)
    covered, widths = [], {}
    for _ in range(200):
        table = intervals.fit(*simulated(rng, 1000), min_faces=50)
        predicted, truth = simulated(rng, 500)
        low, high = intervals.apply(table, predicted)
        covered.append(np.mean((truth >= low) & (truth <= high)))
        for band, (lo, hi) in enumerate(zip(table.lower, table.upper)):
            widths.setdefault(band, []).append(hi - lo)
    assert 0.895 <= np.mean(covered) <= 0.92
    # The bands follow the noise: old faces get wider intervals than children.
    assert np.mean(widths[6]) > 2.5 * np.mean(widths[0])


def test_a_pooled_interval_would_miss_the_old_and_waste_width_on_children():
    rng = np.random.default_rng(2)
    pooled = intervals.fit(*simulated(rng, 3000), edges=(), min_faces=50)
    banded = intervals.fit(*simulated(rng, 3000), min_faces=50)
    predicted, truth = simulated(rng, 3000)
    old = truth > 60
    for table, expect_old in ((pooled, False), (banded, True)):
        low, high = intervals.apply(table, predicted)
        holds = np.mean(((truth >= low) & (truth <= high))[old]) >= 0.85
        assert holds == expect_old


def test_thin_bands_merge_with_their_neighbour_not_with_everyone():
    # 100 faces at 25 (band 2), 60 at 45 (band 4), 10 at 75 (band 6, thin): the old band borrows from
    # its nearest populated neighbours, never the children's tight residuals.
    predicted = np.concatenate([np.full(100, 25.0), np.full(60, 45.0), np.full(10, 75.0)])
    residuals = np.concatenate([np.linspace(-1, 1, 100), np.linspace(-5, 5, 60), np.linspace(-50, 50, 10)])
    table = intervals.fit(predicted, predicted + residuals, min_faces=50)
    assert table.counts[2] == 100 and table.counts[4] == 60
    assert table.counts[6] == 70  # band 6 borrowed bands 5 (empty) and 4
    assert (table.lower[6], table.upper[6]) == pytest.approx(intervals.conformal_offsets(residuals[100:], 0.9))
    assert (table.lower[4], table.upper[4]) == pytest.approx(intervals.conformal_offsets(residuals[100:160], 0.9))
    assert (table.lower[2], table.upper[2]) == pytest.approx(intervals.conformal_offsets(residuals[:100], 0.9))
    assert intervals.borrowed_spans([100, 0, 0, 60, 10], 50) == [[0], [0, 1], [2, 3], [3], [3, 4]]
    assert intervals.borrowed_spans([10, 10, 10], 50) == [[0, 1, 2]] * 3
    assert intervals.borrowed_spans([60, 60], 50) == [[0], [1]]


def test_upper_rank_is_the_ceiling_of_n_plus_one_times_the_level():
    # n = 50 at 90 %: ceil(51 * 0.95) = 49th residual, not ceil(50 * 0.95) = 48th; floor(51 * 0.05) = 2nd.
    assert intervals.conformal_offsets(np.arange(1.0, 51.0), 0.9) == (2.0, 49.0)


def test_groups_get_their_own_offsets_and_the_graph_applies_them_scaled_on_both_sides():
    rng = np.random.default_rng(4)
    predicted = rng.uniform(5, 75, 2000)
    women = rng.random(2000) < 0.5
    truth = predicted + rng.normal(0, 1, 2000) + np.where(women, 8.0, 0.0)  # women read 8 years young
    spread = rng.uniform(0, 6, 2000)
    names = np.where(women, "female", "male")
    table = intervals.fit(predicted, truth, groups=names, spread=spread, scale_floor=2.0, nominal=0.95)
    assert table.groups == ("female", "male") and len(table.lower) == 2 * table.bands
    group = table.group_index(names)
    low, high = intervals.apply(table, predicted, spread, group)
    inside = (truth >= low) & (truth <= high)
    assert inside[women].mean() > 0.93 and inside[~women].mean() > 0.93
    assert np.mean(low[women] - predicted[women]) > np.mean(low[~women] - predicted[~women]) + 5
    graph_low, graph_high = intervals.apply_tf(table, tf.constant(predicted, tf.float32),
                                               tf.constant(spread, tf.float32), tf.constant(group, tf.int32))
    np.testing.assert_allclose(graph_low.numpy(), low, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(graph_high.numpy(), high, rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="per group"):
        intervals.apply(table, predicted, spread)
    with pytest.raises(ValueError, match="not one of"):
        table.group_index(["unknown"])
    assert intervals.IntervalTable.from_json(table.to_json()) == table


def test_the_graph_applies_the_same_table():
    rng = np.random.default_rng(3)
    table = intervals.fit(*simulated(rng, 800))
    predicted = np.array([0.0, 9.99, 10.0, 35.5, 59.9, 60.0, 99.0, 2.0], np.float32)
    low, high = intervals.apply(table, predicted)
    graph_low, graph_high = intervals.apply_tf(table, tf.constant(predicted))
    np.testing.assert_allclose(graph_low.numpy(), low, atol=1e-4)
    np.testing.assert_allclose(graph_high.numpy(), high, atol=1e-4)
    assert (low >= 0).all()
    assert intervals.IntervalTable.from_json(table.to_json()) == table


def test_coverage_report_and_its_wilson_interval():
    report = intervals.coverage([0, 0, 0, 0], [1, 1, 1, 1], [0.5, 2, 1, -1], groups=["a", "a", "b", "b"])
    assert report["all"]["coverage"] == 0.5 and report["a"]["coverage"] == 0.5 and report["b"]["faces"] == 2
    low, high = intervals.wilson(90, 100)
    assert abs(low - 0.8256) < 1e-3 and abs(high - 0.9448) < 1e-3


def test_bad_calibration_data_is_refused():
    with pytest.raises(ValueError, match="finite"):
        intervals.fit([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="equal"):
        intervals.fit([1.0], [1.0, 2.0])


def test_a_scaled_table_widens_where_the_spread_says_doubt():
    rng = np.random.default_rng(4)

    def draw(n):
        spread = rng.exponential(3.0, n)
        truth = rng.uniform(20, 40, n)
        return truth + rng.normal(0, 1 + spread, n), truth, spread

    predicted, truth, spread = draw(4000)
    scaled = intervals.fit(predicted, truth, spread=spread, scale_floor=1.0)
    plain = intervals.fit(predicted, truth)
    predicted, truth, spread = draw(4000)
    doubtful = spread > 6
    for table, holds_where_doubtful in ((scaled, True), (plain, False)):
        low, high = intervals.apply(table, predicted, spread)
        inside = (truth >= low) & (truth <= high)
        assert 0.88 <= inside.mean() <= 0.93
        assert (inside[doubtful].mean() >= 0.85) == holds_where_doubtful
    graph_low, _ = intervals.apply_tf(scaled, tf.constant(predicted[:5], tf.float32), tf.constant(spread[:5], tf.float32))
    np.testing.assert_allclose(graph_low.numpy(), intervals.apply(scaled, predicted[:5], spread[:5])[0], atol=1e-3)
    with pytest.raises(ValueError, match="spread"):
        intervals.apply(scaled, predicted)
