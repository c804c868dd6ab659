"""Scoring predictions: crops averaged per head, metrics per head, fold aggregates and reports,
errors per attribute, the mean-age floor."""

import numpy as np
import pytest
import tensorflow as tf

from keras_alage.evaluation import metrics, scoring
from keras_alage.models import attention
from keras_alage.models.age_model import ModelConfig, build_age_model
from alage_pipelines import augment

TINY = ModelConfig(depth=18, input_size=64, age_classes="adience")


def test_ten_crop_predictions_average_the_crops_per_head():
    model = build_age_model(TINY)
    attention.freeze_attention_state(model)
    crops = np.random.default_rng(1).normal(size=(3, 10, 64, 64, 3)).astype("float32")
    labels = {"label": np.array([0, 3, 7]), "age": np.array([1.0, 10.5, 80.0], "float32"),
              "age_std": np.zeros(3, "float32"), "path": np.array([b"a", b"b", b"c"])}
    data = tf.data.Dataset.from_tensors((crops, labels))
    predictions = scoring.predict_dataset(model, data)
    flat = model(crops.reshape(30, 64, 64, 3), training=False)
    for head, key in scoring.HEADS.items():
        # A batch of 3x10 against one of 30: kernels round differently by batch shape (1.6e-5 of a
        # 0.03 probability was seen on a loaded machine), and probabilities reach 1e-24: bounds for
        # that, far under what averaging the wrong crops or heads gives.
        np.testing.assert_allclose(predictions[head], np.asarray(flat[key]).reshape(3, 10, -1).mean(1),
                                   rtol=2e-4, atol=1e-6)
    result = scoring.score(predictions, TINY.classes().values, grouped=True)
    assert set(result) == {"count", "global", "local", "combined"} and result["count"] == 3
    assert {"mae", "cs5", "bands", "exact_accuracy", "one_off_accuracy"} <= set(result["combined"])
    assert "epsilon_error" not in result["combined"]  # no label std


def test_fold_aggregate_and_markdown_report(tmp_path):
    def fold(mae, n):
        head = {"mae": mae, "cs5": 0.5, "epsilon_error": 0.3,
                "bands": {"0-9": {"mae": mae, "count": n}, "60+": {"mae": float("nan"), "count": 0}}}
        return {"count": n, "global": dict(head), "local": dict(head), "combined": dict(head)}

    per_fold = {"fold0": fold(4.0, 10), "fold1": fold(6.0, 30)}
    combined = scoring.write_report(str(tmp_path), per_fold, "FG-NET")
    assert combined["combined"]["mae"] == {"mean": 5.0, "std": 1.0}
    assert combined["combined"]["bands"]["0-9"] == {"mae": 5.5, "count": 40}  # pooled by images
    text = (tmp_path / "results.md").read_text()
    assert "| **mean ± std** | 40 | 5.000 ± 1.000" in text and "| fold1 | 30 |" in text
    assert "epsilon_error" in text and (tmp_path / "results.json").exists()


def test_errors_per_attribute_and_their_pooling_over_folds():
    classes = list(range(10))
    one_hot = np.eye(10, dtype="float32")
    predictions = {  # predicted ages 2, 4, 9, 9; true 1, 4, 3, 9
        "combined": one_hot[[2, 4, 9, 9]], "age": np.array([1.0, 4.0, 3.0, 9.0]),
        "path": np.array([b"a.jpg", b"b.jpg", b"c.jpg", b"d.jpg"]),
    }
    attributes = {"a.jpg": {"gender": "female"}, "b.jpg": {"gender": "male"}, "c.jpg": {"gender": "female"},
                  "d.jpg": {}}
    groups = scoring.score_groups(predictions, classes, attributes, ["gender"])["gender"]
    assert groups["female"] == {"mae": 3.5, "cs5": 0.5, "count": 2}
    assert groups["male"]["mae"] == 0.0 and groups["unknown"]["count"] == 1
    with pytest.raises(ValueError, match="not in the build's record log"):
        scoring.score_groups(predictions, classes, {"a.jpg": {}}, ["gender"])

    def fold(mae, n):
        head = {"mae": mae, "cs5": 0.5, "bands": {"0-9": {"mae": mae, "count": n}}}
        return {"count": n, "global": head, "local": head, "combined": head, "groups_head": "global",
                "groups": {"gender": {"male": {"mae": mae, "cs5": 1.0, "count": n}}}}

    pooled = scoring.aggregate({"fold0": fold(2.0, 1), "fold1": fold(5.0, 2)})
    assert pooled["groups"]["gender"]["male"] == {"mae": 4.0, "cs5": 1.0, "count": 3}
    report = scoring.markdown_report({"fold0": fold(2.0, 1)}, pooled)
    assert "Global head per gender" in report and "| male | 3 | 4.000 | 1.000 |" in report


def test_mean_age_predictor_by_hand():
    result = scoring.constant_predictor([10.0, 20.0], [5.0, 15.0, 40.0])  # predicts 15
    assert result["mae"] == pytest.approx(35 / 3) and result["cs5"] == pytest.approx(1 / 3)
    assert result["bands"]["40-49"] == {"mae": 25.0, "count": 1}
    with pytest.raises(ValueError, match="needs training and test ages"):
        scoring.constant_predictor([], [1.0])


def test_epsilon_error_is_reported_where_labels_carry_a_std():
    probs = np.eye(8, dtype="float32")[[1, 4]]
    predictions = {head: probs for head in scoring.HEADS} | {
        "label": np.array([1, 4]), "age": np.array([20.0, 30.0], "float32"),
        "age_std": np.array([2.0, 5.0], "float32")}
    ages = [float(a) for a in range(8)]
    result = scoring.score(predictions, ages)
    expected = metrics.epsilon_error(metrics.expected_age(probs, ages), [20.0, 30.0], [2.0, 5.0])
    assert result["combined"]["epsilon_error"] == pytest.approx(expected)


def test_the_ten_crop_box_is_the_unmirrored_centre_crops():
    def predict(flat):  # each crop's box holds the crop's index among its face's crops
        n = tf.shape(flat)[0]
        index = tf.cast(tf.range(n) % (n // 2), tf.float32)[:, None]
        probs = tf.fill((n, 3), 1.0 / 3.0)
        return {"probs": probs, "global_probs": probs, "local_probs": probs, "box": tf.tile(index, (1, 4))}

    outputs = scoring.average_over_crops(predict, tf.zeros((2, 10, 4, 4, 3)))
    np.testing.assert_array_equal(outputs["box"].numpy(), np.full((2, 4), augment.CENTER_CROP, np.float32))
    # The centre and its mirror: the box is the first's, the probabilities the pair's mean.
    outputs = scoring.average_over_crops(predict, tf.zeros((2, 2, 4, 4, 3)))
    np.testing.assert_array_equal(outputs["box"].numpy(), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="come 3 to a face"):
        scoring.average_over_crops(predict, tf.zeros((2, 3, 4, 4, 3)))
