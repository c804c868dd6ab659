"""What made a run, so that runs never mix data or settings silently.

A run folder (one per fold) holds `run.json`: the build it trained on (its folder and the hash
of its manifest), the architecture, the stage, the starting point, and the settings that shape
the data and the optimisation. Resuming the folder with anything else is refused with the
difference named; only the number of epochs may grow. Evaluation reads it back to refuse a
build whose test photos the model trained on.
"""

import dataclasses
import hashlib
import json
import os
from typing import Dict, List, Optional

from alage_pipelines import build, files

RUN_FILE = "run.json"


class RunMismatch(ValueError):
    """A run folder made by other data or settings than the command in hand."""


def build_identity(data_dir: str) -> dict:
    """A build's folder and the SHA-256 of its manifest (`build.Build.identity`)."""
    return build.Build.open(data_dir).identity


def checkpoint_digest(path: Optional[str]) -> Optional[str]:
    """What a starting checkpoint holds, not just where: a released model's weights SHA-256 (from
    its model.json), else the SHA-256 of the file's bytes; None without a checkpoint. A release
    replaced in place (a new version) then cannot silently restart an old run's folds."""
    if not path:
        return None
    from keras_alage.models import release, weight_import  # the one reader of model.json, which checks its shape

    if release.is_release(path):
        try:
            return release.read_description(path)["weights"]["sha256"]
        except ValueError as error:
            raise weight_import.CheckpointError(f"--init_checkpoint={path}: {error}") from None
    from alage_pipelines import inputs

    try:
        inputs.check_regular(path, f"--init_checkpoint={path}")  # a pipe would be waited on
    except inputs.NotRegularFile as error:
        raise weight_import.CheckpointError(str(error)) from None
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# The settings (fields of the run's configs: `RunSpec`, the configs nested in it, `TrainConfig`)
# `run_identity` leaves out, and why; every other field is recorded (tests/training/test_fold_runs.py
# checks it), so a setting added later is recorded unless it is named here.
NOT_RECORDED = {
    "RunSpec": {
        "data_dir": "recorded as the build's identity (its folder and manifest hash)",
        "folds": "recorded per run folder as its fold",
        "validate": "an evaluation setting: watching the test side changes nothing learnt",
        "eval_crops": "an evaluation setting",
        "eval_batch_size": "an evaluation setting",
        "shuffle_buffer": "never recorded; resuming with another buffer is allowed",
    },
    "StartConfig": {
        "calibration_images": "never recorded; resuming with another count is allowed",
    },
    "Augmentation": {
        "jitter": "no command turns it off (the input pipeline's benchmark does, and records no run)",
    },
    "TrainConfig": {
        "run_dir": "the folder the identity is written to",
        "epochs": "may grow when a run is resumed",
        "steps_per_epoch": "never recorded; resuming with another count is allowed",
        "jit_compile": "XLA compiles the same step",
        "image_summaries": "TensorBoard only",
        "audit_input": "writes an audit beside the run; changes nothing learnt",
    },
}

# Where a recorded setting sits in run.json: a nested config's fields in the section of its field
# in the run spec, a plain setting by its name, None: at the top. This is the layout runs have been
# recorded in, so their identity stays; a setting not named here goes to its config's section.
SECTION_OF = {"model": "model", "start": "start", "augmentation": "data", "inner_validation": "data",
              "fixed_box": "start", "attention_memory": "start", "batch_size": "data", "seed": "data",
              "stage": None}
DEFAULT_SECTION = {"RunSpec": "settings", "TrainConfig": "optimisation"}
# Recorded beside the settings: the fold's starting checkpoint as an absolute path (`{fold}`
# replaced) and what it holds (`checkpoint_digest`).
START_FILE_KEYS = ("start.init_checkpoint", "start.init_sha256")


def _json(value):
    return json.loads(json.dumps(value))  # tuples as lists, as run.json holds them


def _recorded_fields(config, section: Optional[str] = None):
    """(section, field name, value) of every field of `config` that `NOT_RECORDED` does not name,
    a nested config's fields in its field's section."""
    owner = type(config).__name__
    for field in dataclasses.fields(config):
        if field.name in NOT_RECORDED.get(owner, {}):
            continue
        value = getattr(config, field.name)
        where = section if section is not None else SECTION_OF.get(field.name, DEFAULT_SECTION.get(owner, owner))
        if dataclasses.is_dataclass(value):
            yield from _recorded_fields(value, where)
        else:
            yield where, field.name, value


def recorded_settings(*configs) -> dict:
    """The sections of run.json that `configs` fill: every field, nested configs' included, but
    those in `NOT_RECORDED`."""
    recorded = {}
    for config in configs:
        for section, name, value in _recorded_fields(config):
            place = recorded if section is None else recorded.setdefault(section, {})
            if name in place:
                raise ValueError(f"{section}.{name} is recorded twice; name one of them in SECTION_OF.")
            place[name] = _json(value)
    return recorded


def run_identity(spec, config, fold: str, init_checkpoint: Optional[str],
                 opened: Optional[build.Build] = None) -> dict:
    """Everything that shapes what a run learns: every field of the run spec (nested configs
    included) and of the `TrainConfig` but those in `NOT_RECORDED` (epochs, evaluation settings,
    XLA, ...), and the fold's starting checkpoint by path and content; `opened`: the run's
    build, where the caller has it open."""
    identity = {"build": (opened or build.Build.open(spec.data_dir)).identity, "fold": fold}
    identity |= recorded_settings(spec, config)
    identity["start"] |= {"init_checkpoint": os.path.abspath(init_checkpoint) if init_checkpoint else None,
                          "init_sha256": checkpoint_digest(init_checkpoint)}
    return identity


def settings_from_identity(cls, recorded: dict, section: Optional[str] = None, **fixed):
    """`cls` (a config of the run) made from a run's recorded identity: each recorded field from
    its place (a setting the run predates at its `ADDED_DEFAULTS` value), each field
    `NOT_RECORDED` at its default, nested configs likewise; `fixed` overrides."""
    flat = {key: value for key, value in ADDED_DEFAULTS.items()} | _flatten(recorded)
    owner = cls.__name__
    settings = {}
    for field in dataclasses.fields(cls):
        if field.name in fixed:
            settings[field.name] = fixed[field.name]
            continue
        if field.name in NOT_RECORDED.get(owner, {}):
            continue
        where = section if section is not None else SECTION_OF.get(field.name, DEFAULT_SECTION.get(owner, owner))
        if dataclasses.is_dataclass(field.default):
            settings[field.name] = settings_from_identity(type(field.default), recorded, where)
            continue
        key = field.name if where is None else f"{where}.{field.name}"
        if key in flat:
            value = flat[key]
            settings[field.name] = tuple(value) if isinstance(value, list) else value
    return cls(**settings)


def _flatten(value, prefix="") -> Dict[str, object]:
    if isinstance(value, dict):
        flat = {}
        for key, item in value.items():
            flat |= _flatten(item, f"{prefix}{key}.")
        return flat
    return {prefix.rstrip("."): json.loads(json.dumps(value))}


# Settings added after runs were recorded without them: such a run had their default.
ADDED_DEFAULTS = {
    "data.train_view": "paper",
    "optimisation.freeze_batch_norm": False,
    "data.inner_validation": False,
    "start.fixed_box": None,
    "start.attention_memory": True,
    "data.old_photo": 0.0,
    "optimisation.distill_weight": 0.0,
    "start.init_faceapi": None,
    "model.box": "bounded",  # ModelConfig.box (the attention box's parametrisation), issue 35
    "start.init_sha256": None,  # unknown: a run started from a checkpoint before this was recorded is refused
}


def differences(recorded: dict, current: dict) -> List[str]:
    """'key: recorded -> current' for every setting that differs (a setting the recorded run
    predates counts as its default, `ADDED_DEFAULTS`)."""
    old, new = _flatten(recorded), _flatten(current)
    old = {key: value for key, value in ADDED_DEFAULTS.items() if key not in old} | old
    return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new))
            if old.get(key) != new.get(key)]


def read_run(run_dir: str) -> Optional[dict]:
    try:
        with open(os.path.join(run_dir, RUN_FILE), encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def check_run(run_dir: str, identity: dict) -> None:
    """Refuses a run folder that holds a run with another identity (a new folder passes)."""
    recorded = read_run(run_dir)
    if recorded is None:
        return
    changed = differences(recorded, identity)
    if changed:
        shown = "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
        raise RunMismatch(
            f"{run_dir} holds a run made with other data or settings ({shown}); resuming it would mix them. "
            "Use a new --run_dir, or delete that folder to start over."
        )


def record_run(run_dir: str, identity: dict) -> None:
    """Records `identity` in a run folder that holds none yet (once its settings are accepted:
    a refused setting never blocks the corrected command); checks it against the one it holds."""
    if read_run(run_dir) is None:
        files.write_atomically(os.path.join(run_dir, RUN_FILE), json.dumps(identity, indent=1, sort_keys=True))
    else:
        check_run(run_dir, identity)


def training_paths(run_dir: str) -> Optional[set]:
    """The image paths of the training side the run learned from, or None where unknown."""
    recorded = read_run(run_dir)
    if recorded is None:
        return None
    data_dir, fold = recorded["build"]["data_dir"], recorded["fold"]
    try:
        trained = build.Build.open(data_dir)
        parts = set(trained.sides(fold)["train"])
        return {e["path"] for e in trained.record_log() if e["status"] == "written" and e["part"] in parts}
    except (FileNotFoundError, KeyError):
        return None


def check_evaluation(run_dir: str, data: build.Build, fold: str) -> str:
    """Refuses to score a model on test photos it trained on; returns what was checked.

    Same build as the run's: fine. Another build: its fold's test photos must not be among the
    run's training photos (by path, and by subject where both builds have subjects). A run
    without `run.json`, or whose build is gone, cannot be checked and is refused.
    """
    data_dir = data.directory
    recorded = read_run(run_dir)
    if recorded is None:
        raise RunMismatch(f"{run_dir} has no {RUN_FILE}: which build it trained on is unknown, so its test "
                          f"photos cannot be checked against {data_dir}.")
    if recorded["build"]["manifest_sha256"] == data.manifest_sha256:
        if recorded["fold"] != fold:
            raise RunMismatch(f"{run_dir} trained on fold {recorded['fold']!r} of {data_dir}, whose training side "
                              f"holds fold {fold!r}'s test photos.")
        return "same build and fold as training"
    trained = training_paths(run_dir)
    if trained is None:
        raise RunMismatch(f"{run_dir} trained on {recorded['build']['data_dir']}, which is gone or changed: its "
                          f"training photos cannot be checked against {data_dir}'s test side.")
    parts = set(data.sides(fold)["test"])
    log = [e for e in data.record_log() if e["status"] == "written" and e["part"] in parts]
    overlap = sorted({e["path"] for e in log} & trained)
    if overlap:
        raise RunMismatch(f"{len(overlap)} test photo(s) of {data_dir} fold {fold!r} were in {run_dir}'s training "
                          f"side (e.g. {overlap[0]}); scoring them would overstate the model.")
    return "another build, no test photo among the training photos"
