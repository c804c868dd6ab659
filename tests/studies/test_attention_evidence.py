"""The controlled comparison's arithmetic: seed-averaged per-face errors, per-fold MAE, paired
differences to the reference, on stand-in runs with known answers."""

import types

import numpy as np
import pytest

from keras_alage.evaluation import run_folders
from keras_alage.models import age_model
from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.studies import attention_evidence
from alage_pipelines import build


@pytest.fixture(scope="module")
def tiny_model():
    model = build_age_model(ModelConfig(depth=18, input_size=32, age_classes="adience"))
    age_model.set_trained_heads(model, ("global", "local"))
    return model


def _one_hot(classes, count=8):
    probs = np.zeros((len(classes), count), np.float32)
    probs[np.arange(len(classes)), classes] = 1.0
    return probs


def test_paired_differences_average_seeds_per_face_and_split_by_fold(tiny_model, monkeypatch):
    ages = np.array(age_model.class_ages_of(tiny_model))
    faces = {"fold0": ["a1", "a2", "b1"], "fold1": ["c1", "c2", "d1"]}
    truth = {p: i % 8 for i, p in enumerate(sum(faces.values(), []))}
    # Predicted class per (variant, seed): the reference is off by one class everywhere; d is exact
    # in seed 0 and off by one in seed 1, so its seed-averaged error is half the reference's.
    offsets = {("ref", 0): 1, ("ref", 1): 1, ("d", 0): 0, ("d", 1): 1}

    def predict_fold_run(fold_dir, data_dir, fold):
        variant, seed = fold_dir.split("/")[:2]
        paths = faces[fold]
        true = np.array([truth[p] for p in paths])
        predicted = np.clip(true + offsets[(variant, int(seed))], 0, 7)
        probs = _one_hot(predicted)
        return tiny_model, {"global": probs, "local": probs, "combined": probs, "age": ages[true],
                            "path": np.array([p.encode() for p in paths]), "box": np.tile([0.1, 0.2, 0.3, 0.4], (3, 1))}

    monkeypatch.setattr(run_folders, "predict_fold_run", predict_fold_run)
    monkeypatch.setattr(build, "read_record_log", lambda _: [
        {"path": p, "subject": p[0], "status": "written"} for p in truth])
    runs = {name: [[f"{name}/{seed}/fold0", f"{name}/{seed}/fold1"] for seed in (0, 1)] for name in ("ref", "d")}
    summary = attention_evidence.compare_variants(runs, "data", "ref", translation_faces=0, grid_path=None)
    error = {p: abs(ages[min(truth[p] + 1, 7)] - ages[truth[p]]) for p in truth}
    for fold, paths in faces.items():
        expected = np.mean([error[p] for p in paths])
        assert summary["variants"]["ref"]["heads"]["combined"]["per_fold"][fold] == pytest.approx(expected)
        assert summary["variants"]["d"]["heads"]["combined"]["per_fold"][fold] == pytest.approx(expected / 2)
        assert summary["variants"]["d"]["combined_minus_reference"]["per_fold"][fold] == pytest.approx(-expected / 2)
    overall = np.mean(list(error.values()))
    d = summary["variants"]["d"]
    assert d["combined_minus_reference"]["mean"] == pytest.approx(-overall / 2)
    assert d["combined_minus_reference"]["low"] <= -overall / 2 <= d["combined_minus_reference"]["high"]
    assert d["heads"]["combined"]["per_seed_mae"] == pytest.approx([0.0, overall])
    assert summary["people"] == 4 and summary["faces"] == 6
    assert d["boxes"]["centre_x_std_over_width"] == pytest.approx(0.0, abs=1e-12)
    text = attention_evidence.summary_markdown(summary)
    assert "Combined head minus ref's" in text and f"| {-overall / 2:+.2f} [" in text


def test_every_table_row_has_its_headers_cells_with_few_or_many_folds():
    def summary(folds):
        cell = {"per_fold": {f: 1.0 for f in folds}, "mean_over_folds": 1.0, "mae": 1.0, "mae_low": 0.9,
                "mae_high": 1.1, "per_seed_mae": [1.0]}
        boxes = {"mean_box": [0.1, 0.2, 0.3, 0.4], "centre_x_std_over_width": 0.0, "centre_y_std_over_height": 0.0,
                 "width_std_over_mean": 0.0}
        variants = {"a": {"trained_heads": ["global"], "heads": {h: cell for h in attention_evidence.HEAD_NAMES},
                          "boxes": boxes},
                    "d": {"trained_heads": ["global", "local"], "heads": {h: cell for h in attention_evidence.HEAD_NAMES},
                          "boxes": boxes, "combined_minus_reference": {"per_fold": {f: -0.1 for f in folds},
                                                                       "mean": -0.1, "low": -0.2, "high": 0.0}}}
        return {"folds": folds, "faces": 10, "people": 3, "reference": "a", "variants": variants}

    for count in (5, 82):
        text = attention_evidence.summary_markdown(summary([f"fold{i}" for i in range(count)]))
        tables = [block.splitlines() for block in text.split("\n\n") if block.startswith("|")]
        assert len(tables) == 3
        for table in tables:
            assert len({line.count("|") for line in table}) == 1, table[:2]
        assert ("| fold4 |" in text) == (count == 5)


def test_fold_folders_are_the_builds_folds_whatever_their_names(tmp_path, monkeypatch):
    """Leave-one-person-out folds are subject001..: a run's fold folders come from its build."""

    monkeypatch.setattr(build.Build, "open", lambda data_dir: types.SimpleNamespace(folds=["subject002", "subject010", "fold0"]))
    for name in ("subject010", "subject002", "logs", "fold0"):
        (tmp_path / name).mkdir()
    assert attention_evidence.fold_dirs(str(tmp_path), "build") == [
        str(tmp_path / "subject002"), str(tmp_path / "subject010"), str(tmp_path / "fold0")]
