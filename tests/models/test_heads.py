import numpy as np
import pytest

from keras_alage.models import heads


def test_combined_prediction_is_eq5_normalised():
    g = np.array([[0.7, 0.2, 0.1]], "float32")
    l = np.array([[0.1, 0.1, 0.8]], "float32")
    combined = heads.CombinePredictions(0.5)([g, l]).numpy()
    np.testing.assert_allclose(combined, (g + 0.5 * l) / 1.5, rtol=1e-6)
    np.testing.assert_allclose(combined.sum(), 1.0, rtol=1e-6)
    assert combined.argmax() == (g + 0.5 * l).argmax()


def test_expected_age_is_the_dex_expectation():
    probs = np.array([[0.5, 0.5, 0.0], [0.0, 0.25, 0.75]], "float32")
    ages = heads.ExpectedAge([10.0, 20.0, 30.0])(probs).numpy()
    np.testing.assert_allclose(ages, [15.0, 27.5])


def test_negative_local_weight_is_rejected():
    with pytest.raises(ValueError, match="received -1"):
        heads.CombinePredictions(-1)


def test_age_std_is_the_spread_of_the_predicted_distribution():
    ages = list(range(101))
    probs = np.zeros((3, 101), np.float32)
    probs[0, [20, 30]] = 0.5  # half at 20, half at 30: mean 25, std 5
    probs[1, 42] = 1.0  # certain
    probs[2] = 1.0 / 101  # flat over 0-100
    std = heads.age_std(probs, ages).numpy()
    np.testing.assert_allclose(std, [5.0, 0.0, np.sqrt((101**2 - 1) / 12.0)], atol=1e-3)
