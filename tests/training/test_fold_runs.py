"""Fold runs you can trust: a run records what made it and refuses to mix, its configs refuse a
setting where they are made, in one line, and a run's configs are read back from its run.json."""

import dataclasses
import hashlib
import json
import os

import pytest

from keras_alage.evaluation import provenance
from keras_alage.models import attention, release
from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.training import configs, fold_runs, loop, run_files
from alage_pipelines import build, protocols
from alage_pipelines.configs import Augmentation, SettingRefused
from tests.training.tiny_runs import TINY, make_build, photos, run_tiny

pytest.importorskip("apache_beam")


@pytest.fixture(scope="module")
def kfold(tmp_path_factory):
    root = tmp_path_factory.mktemp("builds")
    records = photos(root / "photos")
    return make_build(records, root / "kfold", protocols.subject_kfold(records, 2, seed=0))


@pytest.fixture(scope="module")
def other_build(tmp_path_factory):
    root = tmp_path_factory.mktemp("other")
    records = photos(root / "photos")
    return make_build(records, root / "other", protocols.subject_kfold(records, 2, seed=1))


@pytest.fixture(scope="module")
def three_folds(tmp_path_factory):
    root = tmp_path_factory.mktemp("three")
    records = photos(root / "photos")
    return make_build(records, root / "kfold3", protocols.subject_kfold(records, 3, seed=0))


@pytest.mark.slow
def test_a_run_refuses_to_resume_with_other_settings_or_data_but_may_grow(kfold, other_build, tmp_path):
    run_tiny(kfold, tmp_path / "run", augmentation=Augmentation(downscale=0.25))
    recorded = provenance.read_run(str(tmp_path / "run" / "fold0"))
    assert recorded["build"]["data_dir"] == os.path.abspath(kfold) and recorded["optimisation"]["learning_rate"] == 0.01
    with pytest.raises(provenance.RunMismatch, match="optimisation.learning_rate: 0.01 -> 0.02"):
        run_tiny(kfold, tmp_path / "run", learning_rate=0.02, augmentation=Augmentation(downscale=0.25))
    with pytest.raises(provenance.RunMismatch, match="data.downscale: 0.25 -> 0.0"):
        run_tiny(kfold, tmp_path / "run")
    with pytest.raises(provenance.RunMismatch, match="build.manifest_sha256"):
        run_tiny(other_build, tmp_path / "run", augmentation=Augmentation(downscale=0.25))
    run_tiny(kfold, tmp_path / "run", epochs=2, augmentation=Augmentation(downscale=0.25))  # more epochs: resumed
    assert [h["epoch"] for h in run_files.read_history(str(tmp_path / "run" / "fold0"))] == [1, 2]
    spec, config = configs.configs_from_run(str(tmp_path / "run" / "fold0"))  # the run's own configs, read back
    assert spec == configs.RunSpec(data_dir=os.path.abspath(kfold), folds=("fold0",), model=TINY,
                                   augmentation=Augmentation(downscale=0.25))
    assert config == loop.TrainConfig(run_dir=str(tmp_path / "run" / "fold0"), batch_size=4, learning_rate=0.01,
                                      lr_decay_epochs=())


def test_training_on_an_empty_side_stops_with_a_clear_error(tmp_path):
    records = photos(tmp_path / "photos", count=4)
    data_dir = make_build(records, tmp_path / "single", protocols.random_split(records, 0.5, seed=0))
    manifest = build.read_build_manifest(data_dir)
    manifest["parts"]["train"]["records"] = 0  # a fully filtered training side
    with open(os.path.join(data_dir, build.MANIFEST), "w") as f:
        json.dump(manifest, f)
    with pytest.raises(ValueError, match="training side holds no record"):
        run_tiny(data_dir, tmp_path / "run", folds=("all",))


@pytest.mark.slow
def test_a_finished_run_restores_a_missing_final_model_and_its_best_score(kfold, tmp_path):
    run_tiny(kfold, tmp_path / "run")
    fold_dir = tmp_path / "run" / "fold0"
    best = min(h["val_mae"] for h in run_files.read_history(str(fold_dir)))
    os.remove(fold_dir / "model.keras")  # killed after the last checkpoint, before the save
    spec = fold_runs.RunSpec(data_dir=kfold, folds=("fold0",), model=TINY)
    config = loop.TrainConfig(run_dir=str(fold_dir), epochs=1, steps_per_epoch=1, batch_size=4,
                              learning_rate=0.01, lr_decay_epochs=(), image_summaries=0)
    trainer = loop.Trainer(fold_runs._model_builder(spec, "fold0", lambda *_: None), TINY.classes().values, config)
    trainer.fit(None, verbose=0)
    assert (fold_dir / "model.keras").exists()
    assert float(trainer.best_mae.numpy()) == pytest.approx(best)  # a resumed run never forgets its best


@pytest.mark.slow
def test_a_refused_resume_leaves_the_runs_flags_as_they_were(kfold, tmp_path):
    import subprocess
    import sys

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


@pytest.mark.slow
def test_inner_validation_trains_without_one_part_and_scores_it_instead_of_the_test_side(three_folds, tmp_path):
    manifest = build.read_build_manifest(three_folds)
    held_out = build.validation_part(manifest, "fold0")
    assert held_out == "fold1" and build.validation_part(manifest, "fold2") == "fold0"
    spec = fold_runs.RunSpec(data_dir=three_folds, folds=("fold0",), model=TINY, validate=True, eval_crops="center",
                             eval_batch_size=4, inner_validation=True)
    config = loop.TrainConfig(run_dir=str(tmp_path / "run"), epochs=1, steps_per_epoch=6, batch_size=4,
                              learning_rate=0.01, lr_decay_epochs=(), image_summaries=0, audit_input=True)
    result = fold_runs.run(spec, config, log=lambda *_: None, verbose=0)
    audit = json.loads((tmp_path / "run" / "fold0" / run_files.AUDIT / "chief-0" / "epoch-0001.json").read_text())
    part_of = {e["path"]: e["part"] for e in build.read_record_log(three_folds) if e["status"] == "written"}
    assert {part_of[p] for p in audit["paths"]} == {"fold2"}  # neither the test part nor the held-out one
    evaluation_file = json.loads((tmp_path / "run" / "fold0" / "evaluation.json").read_text())
    assert evaluation_file["evaluated_on"] == {"side": "validation", "parts": ["fold1"]}
    assert result["fold0"]["count"] == manifest["parts"]["fold1"]["records"]
    assert provenance.read_run(str(tmp_path / "run" / "fold0"))["data"]["inner_validation"] is True
    with pytest.raises(provenance.RunMismatch, match="data.inner_validation: True -> False"):
        run_tiny(three_folds, tmp_path / "run")


def test_inner_validation_needs_several_training_parts(kfold, tmp_path):
    with pytest.raises(ValueError, match="needs a build of several parts"):
        run_tiny(kfold, tmp_path / "run", inner_validation=True)


@pytest.mark.slow
def test_a_run_recorded_before_a_setting_existed_resumes_as_its_default(kfold, tmp_path):
    run_tiny(kfold, tmp_path / "run")
    path = tmp_path / "run" / "fold0" / provenance.RUN_FILE
    recorded = json.loads(path.read_text())
    for section, key in (("data", "train_view"), ("data", "inner_validation"), ("start", "fixed_box"),
                         ("start", "attention_memory"), ("optimisation", "freeze_batch_norm"),
                         ("data", "old_photo"), ("optimisation", "distill_weight")):
        del recorded[section][key]
    path.write_text(json.dumps(recorded))
    run_tiny(kfold, tmp_path / "run", epochs=2)
    with pytest.raises(provenance.RunMismatch, match="data.train_view: 'paper' -> 'eval'"):
        run_tiny(kfold, tmp_path / "run", epochs=3, augmentation=Augmentation(train_view="eval"))
    assert configs.configs_from_run(str(tmp_path / "run" / "fold0"))[0].augmentation == Augmentation()


def test_an_attention_stage_without_memory_keeps_a_zero_state(kfold, tmp_path):
    run_tiny(kfold, tmp_path / "global")
    run_tiny(kfold, tmp_path / "run", stage="attention", attention_memory=False,
             start=configs.StartConfig(init_checkpoint=str(tmp_path / "global" / "fold0" / "model.keras")))
    model = release.load_model(str(tmp_path / "run" / "fold0" / "model.keras"))
    hidden, cell = attention.attention_state(model)
    assert not hidden.any() and not cell.any()
    assert all(layer.state_frozen for layer in attention.carried_state_layers(model))
    assert provenance.read_run(str(tmp_path / "run" / "fold0"))["start"]["attention_memory"] is False


@pytest.mark.slow
def test_a_refused_start_or_architecture_is_not_recorded_so_the_corrected_command_runs(kfold, tmp_path):
    import keras

    from keras_alage.models import weight_import

    unsafe = tmp_path / "lambda.keras"  # Keras' safe mode refuses it when the model is built
    keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)]).save(unsafe)
    other = tmp_path / "other.weights.h5"  # another architecture's weights: they do not fit
    build_age_model(ModelConfig(depth=34, input_size=32, age_classes="fgnet")).save_weights(other)
    for start, refusal in ((unsafe, "safely"), (other, f"--init_checkpoint={other}")):
        with pytest.raises(weight_import.CheckpointError, match=refusal):
            run_tiny(kfold, tmp_path / "run", stage="attention", start=configs.StartConfig(init_checkpoint=str(start)))
        assert provenance.read_run(str(tmp_path / "run" / "fold0")) is None  # nothing recorded
    with pytest.raises(fold_runs.SettingsRefused, match="^ModelConfig.depth=7 is not a ResNet depth"):
        fold_runs.validate(fold_runs.RunSpec(data_dir=kfold, model=dataclasses.replace(TINY, depth=7)))
    run_tiny(kfold, tmp_path / "run", stage="attention")  # the corrected command is not "other settings"
    assert provenance.read_run(str(tmp_path / "run" / "fold0"))["start"]["init_checkpoint"] is None


@pytest.mark.slow
def test_a_start_replaced_in_place_is_not_resumed_from(kfold, tmp_path):
    """The start is recorded by content: a checkpoint overwritten at the same path (a new release
    version) cannot silently restart the rest of a run."""
    import shutil

    run_tiny(kfold, tmp_path / "g1")
    run_tiny(kfold, tmp_path / "g2", learning_rate=0.05)
    start = tmp_path / "start.keras"
    shutil.copy(tmp_path / "g1" / "fold0" / "model.keras", start)
    from_start = configs.StartConfig(init_checkpoint=str(start))
    run_tiny(kfold, tmp_path / "run", stage="attention", start=from_start)
    recorded = provenance.read_run(str(tmp_path / "run" / "fold0"))["start"]["init_sha256"]
    assert recorded == provenance.checkpoint_digest(str(start)) and len(recorded) == 64
    run_tiny(kfold, tmp_path / "run", epochs=2, stage="attention", start=from_start)  # same start: resumes
    shutil.copy(tmp_path / "g2" / "fold0" / "model.keras", start)
    with pytest.raises(provenance.RunMismatch, match="start.init_sha256"):
        run_tiny(kfold, tmp_path / "run", epochs=3, stage="attention", start=from_start)


# --- Configs, identities and refusals: no training ------------------------------------------------

class _Opened:
    identity = {"data_dir": "data/tiny", "manifest_sha256": "0" * 64}


def _identity(spec=None, config=None, **spec_settings):
    spec = spec or fold_runs.RunSpec(data_dir="data/tiny", model=TINY, **spec_settings)
    config = config or loop.TrainConfig(run_dir="runs/x")
    return provenance.run_identity(spec, config, "fold0", spec.start.checkpoint_of("fold0"), _Opened())


# A spec and config with every recorded setting away from its default but the checkpoint's.
EVERYTHING = (
    fold_runs.RunSpec(data_dir="data/tiny", model=TINY, inner_validation=True, fixed_box=(0.1, 0.2, 0.5, 0.5),
                      attention_memory=False,
                      start=configs.StartConfig(init_faceapi="installed", dlib_heads=False, local_head_from_global=True),
                      augmentation=Augmentation(min_crop_area=0.5, downscale=0.3, grayscale=0.1, old_photo=0.2,
                                                train_view="eval")),
    loop.TrainConfig(run_dir="runs/x", stage="local_head", batch_size=8, seed=3, learning_rate=0.01,
                     lr_decay_epochs=(3, 6), distill_weight=1.5, freeze_batch_norm=True, momentum=0.8, weight_decay=0.0),
)


def _sha256(identity) -> str:
    return hashlib.sha256(json.dumps({k: v for k, v in identity.items() if k != "model"}, sort_keys=True)
                          .encode()).hexdigest()


def test_the_identity_of_existing_runs_is_unchanged():
    """Runs recorded before the configs were nested resume: their run.json reads the same. These
    digests were taken of the identities the flat `RunSpec` gave (before the start and the
    augmentation became configs of their own); the model's section is `ModelConfig`'s fields."""
    default = _identity()
    assert _sha256(default) == "fa16ebf43ca798cc63b32d8bd001a043ef11e6083898a5e3f4c8b25274478f2c"
    assert default["model"] == json.loads(json.dumps(dataclasses.asdict(TINY)))
    assert _sha256(_identity(*EVERYTHING)) == "660934036530ce8c4a1cdcdee56e108c496ff8e2f36259c22aa6fdb55d1c4a22"
    assert sorted(default) == ["build", "data", "fold", "model", "optimisation", "stage", "start"]
    assert sorted(default["data"]) == ["batch_size", "downscale", "grayscale", "inner_validation", "min_crop_area",
                                       "old_photo", "seed", "train_view"]
    assert sorted(default["start"]) == ["attention_memory", "dlib_heads", "fixed_box", "init_checkpoint",
                                        "init_dlib_age", "init_faceapi", "init_sha256", "keras_hub_preset",
                                        "local_head_from_global"]


def test_a_run_json_round_trips_into_the_same_configs(tmp_path):
    spec, config = EVERYTHING
    spec = dataclasses.replace(spec, data_dir=str(tmp_path / "data"), folds=("fold0",))
    run_dir = tmp_path / "run"
    provenance.record_run(str(run_dir), _identity(spec, dataclasses.replace(config, run_dir=str(run_dir)))
                          | {"build": {"data_dir": spec.data_dir, "manifest_sha256": "0" * 64}})
    assert configs.configs_from_run(str(run_dir)) == (spec, dataclasses.replace(config, run_dir=str(run_dir)))
    with pytest.raises(FileNotFoundError, match="has no run.json"):
        configs.configs_from_run(str(tmp_path / "nowhere"))


def test_runs_started_from_different_face_api_packages_differ_in_provenance():
    first = _identity(start=configs.StartConfig(init_faceapi="one/face-api"))
    second = _identity(start=configs.StartConfig(init_faceapi="another/face-api.tgz"))
    assert provenance.differences(first, second) == ["start.init_faceapi: 'one/face-api' -> 'another/face-api.tgz'"]


def _configs_of(cls, seen=None):
    """`cls` and the config classes nested in it."""
    seen = seen if seen is not None else []
    seen.append(cls)
    for field in dataclasses.fields(cls):
        if dataclasses.is_dataclass(field.default):
            _configs_of(type(field.default), seen)
    return seen


def test_every_run_setting_is_recorded_unless_named_as_left_out():
    """A setting added to the run's configs (nested ones included) is in run.json unless
    `NOT_RECORDED` says why not."""
    recorded = {key.split(".")[-1] for key in provenance._flatten(_identity()) if not key.startswith("build.")}
    classes = _configs_of(fold_runs.RunSpec) + [loop.TrainConfig]
    assert {cls.__name__ for cls in classes} >= set(provenance.NOT_RECORDED)
    for cls in classes:
        left_out = provenance.NOT_RECORDED.get(cls.__name__, {})
        for field in dataclasses.fields(cls):
            if dataclasses.is_dataclass(field.default):
                continue  # recorded by its fields
            assert (field.name in recorded) != (field.name in left_out), \
                f"{cls.__name__}.{field.name}: record it in run_identity or name it in NOT_RECORDED"


def test_two_starting_points_are_refused_in_one_line_naming_them(tmp_path):
    with pytest.raises(SettingRefused, match=r"^StartConfig.init_checkpoint and StartConfig.init_faceapi are each a "
                                             r"starting point; give one of them.$") as refused:
        configs.StartConfig(init_checkpoint="runs/a/model.keras", init_faceapi="installed")
    assert refused.value.worded(lambda field: "--" + field.split(".")[1]) == \
        "--init_checkpoint and --init_faceapi are each a starting point; give one of them."
    with pytest.raises(SettingRefused, match="^StartConfig.keras_hub_preset and StartConfig.init_dlib_age and "
                                             "StartConfig.init_faceapi are each"):
        configs.StartConfig(keras_hub_preset="resnet_18_imagenet", init_dlib_age="installed", init_faceapi="x")


@pytest.mark.parametrize("make, refusal", [
    (lambda: configs.StartConfig(calibration_images=0), "StartConfig.calibration_images must be positive; received 0."),
    (lambda: configs.RunSpec("d", eval_crops="five"),
     "RunSpec.eval_crops must be one of ('ten', 'center', 'center_flip', 'shift_flip'); received 'five'."),
    (lambda: configs.RunSpec("d", eval_batch_size=0), "RunSpec.eval_batch_size must be positive; received 0."),
    (lambda: configs.RunSpec("d", shuffle_buffer=-1), "RunSpec.shuffle_buffer must be positive; received -1."),
    (lambda: configs.RunSpec("d", folds=()), "RunSpec.folds names no fold; give fold names or 'all'."),
    (lambda: configs.RunSpec("d", fixed_box=(1, 2)),
     "RunSpec.fixed_box must be (x, y, w, h) or 'whole'; received (1, 2)."),
    (lambda: configs.RunSpec("d", fixed_box="middle"),
     "RunSpec.fixed_box must be (x, y, w, h) or 'whole'; received 'middle'."),
])
def test_a_run_config_out_of_range_is_refused_in_one_line(make, refusal):
    with pytest.raises(SettingRefused) as refused:
        make()
    assert str(refused.value) == refusal


def test_settings_out_of_range_or_for_another_stage_are_refused_in_the_configs_words(tmp_path):
    attention_stage = loop.TrainConfig(run_dir=str(tmp_path), stage="attention")
    spec = fold_runs.RunSpec(data_dir="d", model=TINY)
    for changed_spec, config, refusal in (
            (dataclasses.replace(spec, fixed_box="whole"), attention_stage,
             "RunSpec.fixed_box needs TrainConfig.stage=local_head (stage 'attention' would train the location "
             "network away from it)."),
            (spec, dataclasses.replace(attention_stage, distill_weight=-1.0),
             "TrainConfig.distill_weight must be 0 or more; received -1.0."),
            (spec, loop.TrainConfig(run_dir=str(tmp_path), stage="global", distill_weight=1.0),
             "TrainConfig.distill_weight teaches the local head from the global head: it is for the attention and "
             "local_head stages."),
            (dataclasses.replace(spec, attention_memory=False), loop.TrainConfig(run_dir=str(tmp_path)),
             "RunSpec.attention_memory=False is for the attention and local_head stages.")):
        with pytest.raises(SettingRefused) as refused:
            fold_runs.check_settings(changed_spec, config, None)
        assert str(refused.value) == refusal
    fold_runs.check_settings(dataclasses.replace(spec, augmentation=Augmentation(old_photo=0.5)),
                             dataclasses.replace(attention_stage, distill_weight=1.0), None)
