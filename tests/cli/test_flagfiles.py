"""Flagfiles are data: every one in configs/ parses against the train command's flags, and a
short name finds its file in any sub-folder of configs/."""

import copy
import dataclasses
import pathlib

import pytest
from absl import flags

from keras_alage import cli
from keras_alage.cli import train
from keras_alage.training import fold_runs, loop

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
            "--depth=18", "--layout=dlib", "--distill_weight=2", "--noattention_memory"])
    spec, config = fold_runs.specs_from_flags(values)
    assert spec.folds == ("fold1", "fold2") and spec.downscale == 0.3 and spec.old_photo == 0.2
    assert spec.fixed_box == (0.1, 0.2, 0.5, 0.5) and spec.attention_memory is False
    assert spec.model.depth == 18 and spec.model.layout == "dlib"
    assert config.lr_decay_epochs == (3, 6) and config.stage == "local_head" and config.distill_weight == 2.0
    # every setting has its flag, or is one the command leaves at its default
    flagless = {"model", "calibration_images", "nesterov", "image_summaries"}
    for cls in (fold_runs.RunSpec, loop.TrainConfig):
        for field in dataclasses.fields(cls):
            flag = fold_runs.FLAG_OF_FIELD.get(field.name, field.name) if cls is fold_runs.RunSpec else field.name
            assert flag in values or field.name in flagless, f"{cls.__name__}.{field.name} has no flag"
    with pytest.raises(ValueError, match="--lr_decay_epochs"):
        values(["train.py", "--data_dir=d", "--run_dir=r", "--lr_decay_epochs=x"])
        fold_runs.specs_from_flags(values)
    values(["train.py", "--data_dir=d", "--run_dir=r", "--lr_decay_epochs=90,60"])  # any order: one schedule,
    assert fold_runs.specs_from_flags(values)[1].lr_decay_epochs == (60, 90)  # recorded alike in run.json
    with pytest.raises(ValueError, match="--lr_decay_epochs are epochs from 1 on"):
        values(["train.py", "--data_dir=d", "--run_dir=r", "--lr_decay_epochs=0,30"])
        fold_runs.specs_from_flags(values)


def test_a_flagfiles_start_and_another_on_the_command_line_are_a_usage_error(train_flags, monkeypatch):
    """The model started from one of them and said nothing of the other; now the command stops (exit 2)."""
    from absl import app

    values = copy.deepcopy(train_flags)
    values(["train.py", f"--flagfile={REPO / 'configs' / 'paper' / 'fgnet.flags'}", "--init_dlib_age=installed"])
    monkeypatch.setattr(train, "FLAGS", values)
    with pytest.raises(app.UsageError, match="^--init_checkpoint and --init_dlib_age are each a starting point; "
                                             "give one of them.$"):
        train.main(["train.py"])
