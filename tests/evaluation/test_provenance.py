"""Runs you can trust at evaluation: a model is never scored on photos it trained on, a report of
another build or view never overwrites the run's, and saves are atomic. (The fold runs' own
provenance, resuming and refusals: tests/training/test_fold_runs.py.)"""

import json
import os

import pytest

from keras_alage.evaluation import provenance, run_folders
from keras_alage.models.age_model import build_age_model
from keras_alage.training import run_files
from alage_pipelines import build, protocols
from tests.training.tiny_runs import TINY, make_build, photos, run_tiny

pytest.importorskip("apache_beam")


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("builds")
    records = photos(root / "photos")
    kfold = make_build(records, root / "kfold", protocols.subject_kfold(records, 2, seed=0))
    other = make_build(records, root / "other", protocols.subject_kfold(records, 2, seed=1))
    return kfold, other


def test_evaluation_refuses_test_photos_the_model_trained_on(builds, tmp_path):
    kfold, other = builds
    run_tiny(kfold, tmp_path / "run")
    run_dir = str(tmp_path / "run" / "fold0")
    kfold, other = build.Build.open(kfold), build.Build.open(other)
    assert provenance.check_evaluation(run_dir, kfold, "fold0") == "same build and fold as training"
    with pytest.raises(provenance.RunMismatch, match="fold 'fold0'.*holds fold 'fold1'"):
        provenance.check_evaluation(run_dir, kfold, "fold1")
    # The other build splits the same subjects differently: its test sides hold training photos.
    with pytest.raises(provenance.RunMismatch, match="test photo\\(s\\) of .* were in"):
        for fold in ("fold0", "fold1"):
            provenance.check_evaluation(run_dir, other, fold)


def test_an_evaluation_of_another_build_never_overwrites_the_runs_report(builds, tmp_path):
    kfold, other = builds
    run_tiny(kfold, tmp_path / "run")
    run_dir = str(tmp_path / "run")
    assert run_folders.default_report_dir(run_dir, kfold, "ten") == run_dir
    elsewhere = run_folders.default_report_dir(run_dir, other, "ten")
    assert elsewhere.startswith(os.path.join(run_dir, "eval-other-")) and elsewhere != run_dir
    assert run_folders.default_report_dir(run_dir, kfold, "center") != run_dir
    os.makedirs(elsewhere)
    with open(os.path.join(elsewhere, "results.json"), "w") as f:
        json.dump({"source": {"build": provenance.build_identity(kfold), "crops": "center"}}, f)
    with pytest.raises(FileExistsError, match="reports another evaluation"):
        run_folders.check_report_target(elsewhere, {"build": provenance.build_identity(other), "crops": "ten"})
    # Faces seen as old photos are another evaluation: their own folder, never over a report of the faces as built.
    old = run_folders.default_report_dir(run_dir, kfold, "ten", "old_photo")
    assert old not in (run_dir, run_folders.default_report_dir(run_dir, kfold, "ten")) and old.endswith("old_photo")
    built = {"build": provenance.build_identity(kfold), "crops": "ten"}
    with pytest.raises(FileExistsError, match="the training's report of the faces as built"):
        run_folders.check_report_target(run_dir, built | {"eval_view": "old_photo"})
    run_folders.check_report_target(run_dir, built)
    with open(os.path.join(elsewhere, "results.json"), "w") as f:
        json.dump({"source": built | {"eval_view": "old_photo"}}, f)
    with pytest.raises(FileExistsError, match="faces old_photo"):
        run_folders.check_report_target(elsewhere, built)


def test_model_saves_are_atomic(tmp_path, monkeypatch):
    model = build_age_model(TINY)
    path = tmp_path / "model.keras"
    run_files.save_model_atomically(model, str(path))
    before = path.read_bytes()

    def dies_half_way(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(type(model), "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        run_files.save_model_atomically(model, str(path))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.keras"]
