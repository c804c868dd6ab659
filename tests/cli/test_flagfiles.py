"""Flagfiles are data: every one in configs/ parses against the train command's flags, and a
short name finds its file in any sub-folder of configs/."""

import copy
import dataclasses
import pathlib

import pytest
from absl import flags

from keras_alage import cli
from keras_alage.cli import train
from keras_alage.training import configs as training_configs
from keras_alage.training import fold_runs, loop
from alage_pipelines import configs

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def train_flags():
    """The flags the train command defines (on absl's global FLAGS, as a run has them)."""
    return train.FLAGS


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.flags")), ids=lambda p: p.name)
def test_every_flagfile_parses_and_names_existing_flags(path, train_flags):
    values = copy.deepcopy(train_flags)
    lines = [l.strip() for l in path.read_text().splitlines() if l.strip() and not l.lstrip().startswith("#")]
    names = [l[2:].split("=", 1)[0] for l in lines]
    names = [n[2:] if n not in values and n.startswith("no") and n[2:] in values else n for n in names]  # --noflag
    unknown = [n for n in names if n not in values]
    assert not unknown, f"{path.name} names flags train.py does not define: {unknown}"
    values(["train.py", f"--flagfile={path}"])  # types and enum values
    assert values["data_dir"].present and values["run_dir"].present and values["age_classes"].present


def test_short_flagfile_names_resolve_to_configs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.resolve_flagfiles(["train.py", "--flagfile=morph.flags", "--epochs=3"]) == [
        "train.py", f"--flagfile={REPO / 'configs' / 'paper' / 'morph.flags'}", "--epochs=3"]
    (tmp_path / "morph.flags").write_text("--epochs=1\n")
    assert cli.resolve_flagfiles(["--flagfile=morph.flags"]) == ["--flagfile=morph.flags"]  # the local file wins
    with pytest.raises(SystemExit) as stopped:
        cli.resolve_flagfiles(["--flagfile=nope.flags"])
    assert stopped.value.code == 2 and "--flagfile: nope.flags not found" in capsys.readouterr().err
    assert isinstance(flags.FLAGS, flags.FlagValues)


def test_train_flags_become_the_run_spec_and_config_in_one_place(train_flags):
    values = copy.deepcopy(train_flags)
    values(["train.py", "--data_dir=d", "--run_dir=r", "--fold=fold1,fold2", "--downscale_augment=0.3",
            "--old_photo_augment=0.2", "--lr_decay_epochs=3,6", "--fixed_box=0.1,0.2,0.5,0.5", "--stage=local_head",
            "--depth=18", "--layout=dlib", "--distill_weight=2", "--noattention_memory", "--init_dlib_age=installed",
            "--nodlib_heads", "--min_crop_area=0.5", "--train_view=eval"])
    spec, config = train.specs_from_flags(values)
    assert spec.folds == ("fold1", "fold2") and spec.fixed_box == (0.1, 0.2, 0.5, 0.5)
    assert spec.augmentation == configs.Augmentation(min_crop_area=0.5, downscale=0.3, old_photo=0.2, train_view="eval")
    assert spec.start == training_configs.StartConfig(init_dlib_age="installed", dlib_heads=False)
    assert spec.attention_memory is False and spec.model.depth == 18 and spec.model.layout == "dlib"
    assert config.lr_decay_epochs == (3, 6) and config.stage == "local_head" and config.distill_weight == 2.0
    # every setting has its flag, or is one the command leaves at its default
    flagless = {"TrainConfig.nesterov", "TrainConfig.image_summaries", "StartConfig.calibration_images",
                "Augmentation.jitter"}
    for cls in (fold_runs.RunSpec, training_configs.StartConfig, configs.Augmentation, loop.TrainConfig):
        for field in dataclasses.fields(cls):
            name = f"{cls.__name__}.{field.name}"
            if dataclasses.is_dataclass(field.default) or name in flagless:
                continue
            assert train.flag_of(name) in values, f"{name} has no flag"
    with pytest.raises(ValueError, match="--lr_decay_epochs"):
        values(["train.py", "--data_dir=d", "--run_dir=r", "--lr_decay_epochs=x"])
        train.specs_from_flags(values)
    values(["train.py", "--data_dir=d", "--run_dir=r", "--lr_decay_epochs=90,60"])  # any order: one schedule,
    assert train.specs_from_flags(values)[1].lr_decay_epochs == (60, 90)  # recorded alike in run.json
    with pytest.raises(ValueError, match="--lr_decay_epochs are epochs from 1 on"):
        values(["train.py", "--data_dir=d", "--run_dir=r", "--lr_decay_epochs=0,30"])
        train.specs_from_flags(values)


@pytest.mark.parametrize("flag, refusal", [
    ("--old_photo_augment=1.5", "--old_photo_augment is a probability in [0, 1]; received 1.5."),
    ("--downscale_augment=-1", "--downscale_augment is a probability in [0, 1]; received -1.0."),
    ("--min_crop_area=0", "--min_crop_area must be in (0, 1]; received 0.0."),
])
def test_a_setting_a_config_refuses_is_worded_in_the_flags(train_flags, flag, refusal):
    values = copy.deepcopy(train_flags)
    values(["train.py", "--data_dir=d", "--run_dir=r", flag])
    with pytest.raises(ValueError) as refused:
        train.specs_from_flags(values)
    assert str(refused.value) == refusal


def test_the_configs_checks_across_settings_are_worded_in_the_flags():
    refused = configs.SettingRefused("{0} needs {1}=local_head.", "RunSpec.fixed_box", "TrainConfig.stage")
    assert train.flag_words(refused) == "--fixed_box needs --stage=local_head."
    assert train.flag_of("RunSpec.folds") == "fold" and train.flag_of("Augmentation.grayscale") == "grayscale_augment"


def test_a_flagfiles_start_and_another_on_the_command_line_are_a_usage_error(train_flags, monkeypatch):
    """The model started from one of them and said nothing of the other; now the command stops (exit 2)."""
    from absl import app

    values = copy.deepcopy(train_flags)
    values(["train.py", f"--flagfile={REPO / 'configs' / 'paper' / 'fgnet.flags'}", "--init_dlib_age=installed"])
    monkeypatch.setattr(train, "FLAGS", values)
    with pytest.raises(app.UsageError, match="^--init_checkpoint and --init_dlib_age are each a starting point; "
                                             "give one of them.$"):
        train.main(["train.py"])
