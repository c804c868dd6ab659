"""Runs you can trust: a run records what made it, refuses to mix, and saves atomically."""

import dataclasses
import json
import os

import cv2
import numpy as np
import pytest

from keras_alage.evaluation import provenance, run_folders
from keras_alage.models import attention, release
from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.training import fold_runs, loop
from alage_pipelines import build, faces, protocols
from alage_pipelines.records import AgeRecord

pytest.importorskip("apache_beam")

TINY = ModelConfig(depth=18, input_size=32, age_classes="fgnet")


def _photos(folder, count=12):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    records = []
    for i in range(count):
        path = folder / f"face{i}.jpg"
        cv2.imwrite(str(path), cv2.resize(rng.integers(0, 255, (6, 6, 3), dtype=np.uint8), (48, 48)))
        records.append(AgeRecord(str(path), float(5 + 3 * i), 5 + 3 * i, subject=f"s{i % 4}"))
    return records


def _build(records, out, split):
    config = build.BuildConfig(output_dir=str(out), num_classes=70, crop=faces.CropSpec(size=40),
                               policy=faces.FacePolicy(detect=False), overwrite=True)
    build.build_tfrecords(split, records, config, "tiny")
    return str(out)


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("builds")
    records = _photos(root / "photos")
    kfold = _build(records, root / "kfold", protocols.subject_kfold(records, 2, seed=0))
    other = _build(records, root / "other", protocols.subject_kfold(records, 2, seed=1))
    return kfold, other


@pytest.fixture(scope="module")
def three_folds(tmp_path_factory):
    root = tmp_path_factory.mktemp("three")
    records = _photos(root / "photos")
    return _build(records, root / "kfold3", protocols.subject_kfold(records, 3, seed=0))


def _run(data_dir, run_dir, epochs=1, learning_rate=0.01, folds=("fold0",), stage="global", **spec_settings):
    spec = fold_runs.RunSpec(data_dir=data_dir, folds=folds, model=TINY, validate=True, eval_crops="center",
                              eval_batch_size=4, **spec_settings)
    config = loop.TrainConfig(run_dir=str(run_dir), epochs=epochs, steps_per_epoch=1, batch_size=4,
                                  learning_rate=learning_rate, lr_decay_epochs=(), image_summaries=0, stage=stage)
    return fold_runs.run(spec, config, log=lambda *_: None, verbose=0)


def test_a_run_refuses_to_resume_with_other_settings_or_data_but_may_grow(builds, tmp_path):
    kfold, other = builds
    _run(kfold, tmp_path / "run")
    recorded = provenance.read_run(str(tmp_path / "run" / "fold0"))
    assert recorded["build"]["data_dir"] == os.path.abspath(kfold) and recorded["optimisation"]["learning_rate"] == 0.01
    with pytest.raises(provenance.RunMismatch, match="optimisation.learning_rate: 0.01 -> 0.02"):
        _run(kfold, tmp_path / "run", learning_rate=0.02)
    with pytest.raises(provenance.RunMismatch, match="build.manifest_sha256"):
        _run(other, tmp_path / "run")
    _run(kfold, tmp_path / "run", epochs=2)  # more epochs of the same run: resumed
    assert [h["epoch"] for h in loop.read_history(str(tmp_path / "run" / "fold0"))] == [1, 2]


def test_evaluation_refuses_test_photos_the_model_trained_on(builds, tmp_path):
    kfold, other = builds
    _run(kfold, tmp_path / "run")
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
    _run(kfold, tmp_path / "run")
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


def test_training_on_an_empty_side_stops_with_a_clear_error(tmp_path):
    records = _photos(tmp_path / "photos", count=4)
    data_dir = _build(records, tmp_path / "single", protocols.random_split(records, 0.5, seed=0))
    manifest = build.read_build_manifest(data_dir)
    manifest["parts"]["train"]["records"] = 0  # a fully filtered training side
    with open(os.path.join(data_dir, build.MANIFEST), "w") as f:
        json.dump(manifest, f)
    with pytest.raises(ValueError, match="training side holds no record"):
        _run(data_dir, tmp_path / "run", folds=("all",))


def test_a_finished_run_restores_a_missing_final_model_and_its_best_score(builds, tmp_path):
    kfold, _ = builds
    _run(kfold, tmp_path / "run")
    fold_dir = tmp_path / "run" / "fold0"
    best = min(h["val_mae"] for h in loop.read_history(str(fold_dir)))
    os.remove(fold_dir / "model.keras")  # killed after the last checkpoint, before the save
    spec = fold_runs.RunSpec(data_dir=kfold, folds=("fold0",), model=TINY)
    config = loop.TrainConfig(run_dir=str(fold_dir), epochs=1, steps_per_epoch=1, batch_size=4,
                                  learning_rate=0.01, lr_decay_epochs=(), image_summaries=0)
    trainer = loop.Trainer(fold_runs._model_builder(spec, "fold0", lambda *_: None), TINY.classes().values, config)
    trainer.fit(None, verbose=0)
    assert (fold_dir / "model.keras").exists()
    assert float(trainer.best_mae.numpy()) == pytest.approx(best)  # a resumed run never forgets its best


def test_model_saves_are_atomic(tmp_path, monkeypatch):
    model = build_age_model(TINY)
    path = tmp_path / "model.keras"
    loop.save_model_atomically(model, str(path))
    before = path.read_bytes()

    def dies_half_way(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as f:
            f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(type(model), "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        loop.save_model_atomically(model, str(path))
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["model.keras"]


def test_a_refused_resume_leaves_the_runs_flags_as_they_were(builds, tmp_path):
    import subprocess
    import sys

    kfold, _ = builds
    script = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "scripts", "train.py")
    common = [sys.executable, script, f"--data_dir={kfold}", f"--run_dir={tmp_path / 'run'}", "--fold=fold0",
              "--depth=18", "--input_size=32", "--epochs=1", "--steps_per_epoch=1", "--batch_size=4",
              "--eval_crops=center", "--novalidate"]
    first = subprocess.run(common + ["--learning_rate=0.01"], capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    flags_before = (tmp_path / "run" / "flags.txt").read_text()
    second = subprocess.run(common + ["--learning_rate=0.05"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 2 and "optimisation.learning_rate: 0.01 -> 0.05" in second.stderr
    assert (tmp_path / "run" / "flags.txt").read_text() == flags_before


def test_inner_validation_trains_without_one_part_and_scores_it_instead_of_the_test_side(three_folds, tmp_path):
    manifest = build.read_build_manifest(three_folds)
    held_out = build.validation_part(manifest, "fold0")
    assert held_out == "fold1" and build.validation_part(manifest, "fold2") == "fold0"
    spec = fold_runs.RunSpec(data_dir=three_folds, folds=("fold0",), model=TINY, validate=True, eval_crops="center",
                              eval_batch_size=4, inner_validation=True)
    config = loop.TrainConfig(run_dir=str(tmp_path / "run"), epochs=1, steps_per_epoch=6, batch_size=4,
                                  learning_rate=0.01, lr_decay_epochs=(), image_summaries=0, audit_input=True)
    result = fold_runs.run(spec, config, log=lambda *_: None, verbose=0)
    audit = json.loads((tmp_path / "run" / "fold0" / loop.AUDIT / "chief-0" / "epoch-0001.json").read_text())
    part_of = {e["path"]: e["part"] for e in build.read_record_log(three_folds) if e["status"] == "written"}
    assert {part_of[p] for p in audit["paths"]} == {"fold2"}  # neither the test part nor the held-out one
    evaluation_file = json.loads((tmp_path / "run" / "fold0" / "evaluation.json").read_text())
    assert evaluation_file["evaluated_on"] == {"side": "validation", "parts": ["fold1"]}
    assert result["fold0"]["count"] == manifest["parts"]["fold1"]["records"]
    assert provenance.read_run(str(tmp_path / "run" / "fold0"))["data"]["inner_validation"] is True
    with pytest.raises(provenance.RunMismatch, match="data.inner_validation: True -> False"):
        _run(three_folds, tmp_path / "run")


def test_inner_validation_needs_several_training_parts(builds, tmp_path):
    kfold, _ = builds
    with pytest.raises(ValueError, match="needs a build of several parts"):
        _run(kfold, tmp_path / "run", inner_validation=True)


def test_a_run_recorded_before_a_setting_existed_resumes_as_its_default(builds, tmp_path):
    kfold, _ = builds
    _run(kfold, tmp_path / "run")
    path = tmp_path / "run" / "fold0" / provenance.RUN_FILE
    recorded = json.loads(path.read_text())
    for section, key in (("data", "train_view"), ("data", "inner_validation"), ("start", "fixed_box"),
                         ("start", "attention_memory"), ("optimisation", "freeze_batch_norm"),
                         ("data", "old_photo"), ("optimisation", "distill_weight")):
        del recorded[section][key]
    path.write_text(json.dumps(recorded))
    _run(kfold, tmp_path / "run", epochs=2)
    with pytest.raises(provenance.RunMismatch, match="data.train_view: 'paper' -> 'eval'"):
        _run(kfold, tmp_path / "run", epochs=3, train_view="eval")


def test_an_attention_stage_without_memory_keeps_a_zero_state(builds, tmp_path):
    kfold, _ = builds
    _run(kfold, tmp_path / "global")
    _run(kfold, tmp_path / "run", stage="attention", attention_memory=False,
         init_checkpoint=str(tmp_path / "global" / "fold0" / "model.keras"))
    model = release.load_model(str(tmp_path / "run" / "fold0" / "model.keras"))
    hidden, cell = attention.attention_state(model)
    assert not hidden.any() and not cell.any()
    assert all(layer.state_frozen for layer in attention.carried_state_layers(model))
    assert provenance.read_run(str(tmp_path / "run" / "fold0"))["start"]["attention_memory"] is False
    with pytest.raises(ValueError, match="--fixed_box needs --stage=local_head"):
        fold_runs.check_settings(fold_runs.RunSpec(data_dir=kfold, fixed_box="whole"),
                                  loop.TrainConfig(run_dir=str(tmp_path), stage="attention"), None)


def test_settings_out_of_range_or_for_another_stage_are_refused(builds, tmp_path):
    kfold, _ = builds
    attention_stage = loop.TrainConfig(run_dir=str(tmp_path), stage="attention")
    with pytest.raises(ValueError, match=r"--old_photo_augment is a probability in \[0, 1\]; received 1.5"):
        fold_runs.check_settings(fold_runs.RunSpec(data_dir=kfold, old_photo=1.5), attention_stage, None)
    with pytest.raises(ValueError, match="--distill_weight must be 0 or more"):
        fold_runs.check_settings(fold_runs.RunSpec(data_dir=kfold),
                                  dataclasses.replace(attention_stage, distill_weight=-1.0), None)
    with pytest.raises(ValueError, match="--distill_weight teaches the local head"):
        fold_runs.check_settings(fold_runs.RunSpec(data_dir=kfold),
                                  loop.TrainConfig(run_dir=str(tmp_path), stage="global", distill_weight=1.0), None)
    fold_runs.check_settings(fold_runs.RunSpec(data_dir=kfold, old_photo=0.5),
                              dataclasses.replace(attention_stage, distill_weight=1.0), None)


def test_a_refused_start_or_architecture_is_not_recorded_so_the_corrected_command_runs(builds, tmp_path):
    import keras

    from keras_alage.models import weight_import

    kfold, _ = builds
    unsafe = tmp_path / "lambda.keras"  # Keras' safe mode refuses it when the model is built
    keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)]).save(unsafe)
    other = tmp_path / "other.weights.h5"  # another architecture's weights: they do not fit
    build_age_model(ModelConfig(depth=34, input_size=32, age_classes="fgnet")).save_weights(other)
    for start, refusal in ((unsafe, "safely"), (other, f"--init_checkpoint={other}")):
        with pytest.raises(weight_import.CheckpointError, match=refusal):
            _run(kfold, tmp_path / "run", stage="attention", init_checkpoint=str(start))
        assert provenance.read_run(str(tmp_path / "run" / "fold0")) is None  # nothing recorded
    with pytest.raises(fold_runs.SettingsRefused, match="--depth=7 is not a ResNet depth"):
        fold_runs.validate(fold_runs.RunSpec(data_dir=kfold, model=dataclasses.replace(TINY, depth=7)))
    _run(kfold, tmp_path / "run", stage="attention")  # the corrected command is not "other settings"
    assert provenance.read_run(str(tmp_path / "run" / "fold0"))["start"]["init_checkpoint"] is None


def test_a_start_replaced_in_place_is_not_resumed_from(builds, tmp_path):
    """The start is recorded by content: a checkpoint overwritten at the same path (a new release
    version) cannot silently restart the rest of a run."""
    import shutil

    kfold, _ = builds
    _run(kfold, tmp_path / "g1")
    _run(kfold, tmp_path / "g2", learning_rate=0.05)
    start = tmp_path / "start.keras"
    shutil.copy(tmp_path / "g1" / "fold0" / "model.keras", start)
    _run(kfold, tmp_path / "run", stage="attention", init_checkpoint=str(start))
    recorded = provenance.read_run(str(tmp_path / "run" / "fold0"))["start"]["init_sha256"]
    assert recorded == provenance.checkpoint_digest(str(start)) and len(recorded) == 64
    _run(kfold, tmp_path / "run", epochs=2, stage="attention", init_checkpoint=str(start))  # same start: resumes
    shutil.copy(tmp_path / "g2" / "fold0" / "model.keras", start)
    with pytest.raises(provenance.RunMismatch, match="start.init_sha256"):
        _run(kfold, tmp_path / "run", epochs=3, stage="attention", init_checkpoint=str(start))


class _Opened:
    identity = {"directory": "data/tiny", "manifest_sha256": "0" * 64}


def _identity(**spec_settings):
    spec = fold_runs.RunSpec(data_dir="data/tiny", model=TINY, **spec_settings)
    return provenance.run_identity(spec, loop.TrainConfig(run_dir="runs/x"), "fold0", spec.init_checkpoint, _Opened())


def test_runs_started_from_different_face_api_packages_differ_in_provenance():
    first, second = _identity(init_faceapi="one/face-api"), _identity(init_faceapi="another/face-api.tgz")
    assert provenance.differences(first, second) == ["start.init_faceapi: 'one/face-api' -> 'another/face-api.tgz'"]


def test_every_run_setting_is_recorded_unless_named_as_left_out():
    """A setting added to RunSpec or TrainConfig is in run.json unless `NOT_RECORDED` says why not."""
    recorded = {key.split(".")[-1] for key in provenance._flatten(_identity())} | {"model"}
    for cls in (fold_runs.RunSpec, loop.TrainConfig):
        left_out = provenance.NOT_RECORDED[cls.__name__]
        for field in dataclasses.fields(cls):
            assert (field.name in recorded) != (field.name in left_out), \
                f"{cls.__name__}.{field.name}: record it in run_identity or name it in NOT_RECORDED"


def test_two_starting_points_are_refused_in_one_line_naming_them(tmp_path):
    kfold = str(tmp_path / "data")  # refused before the build is read
    with pytest.raises(fold_runs.SettingsRefused, match="^--init_checkpoint and --init_faceapi are each a starting "
                                                        "point; give one of them.$"):
        _run(kfold, tmp_path / "run", init_checkpoint="runs/a/model.keras", init_faceapi="installed")
    with pytest.raises(fold_runs.SettingsRefused, match="^--keras_hub_preset and --init_dlib_age are each"):
        fold_runs.RunSpec(data_dir=kfold, keras_hub_preset="resnet_18_imagenet", init_dlib_age="installed")
    assert not (tmp_path / "run").exists()  # refused before the run folder is made
