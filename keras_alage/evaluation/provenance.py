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


# The run's settings (`RunSpec`, `TrainConfig` fields) `run_identity` leaves out, and why; every
# other field is recorded (tests/evaluation/test_provenance.py checks it), so a setting added later
# is recorded unless it is named here.
NOT_RECORDED = {
    "RunSpec": {
        "data_dir": "recorded as the build's identity (its folder and manifest hash)",
        "folds": "recorded per run folder as its fold",
        "validate": "an evaluation setting: watching the test side changes nothing learnt",
        "eval_crops": "an evaluation setting",
        "eval_batch_size": "an evaluation setting",
        "shuffle_buffer": "never recorded; resuming with another buffer is allowed",
        "calibration_images": "never recorded; resuming with another count is allowed",
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


def run_identity(spec, config, fold: str, init_checkpoint: Optional[str],
                 opened: Optional[build.Build] = None) -> dict:
    """Everything that shapes what a run learns: every `RunSpec` and `TrainConfig` field but those
    in `NOT_RECORDED` (epochs, evaluation settings, XLA, ...); `opened`: the run's build, where the
    caller has it open."""
    return {
        "build": (opened or build.Build.open(spec.data_dir)).identity,
        "fold": fold,
        "model": dataclasses.asdict(spec.model),
        "stage": config.stage,
        "start": {
            "init_checkpoint": os.path.abspath(init_checkpoint) if init_checkpoint else None,
            "init_sha256": checkpoint_digest(init_checkpoint),
            "keras_hub_preset": spec.keras_hub_preset,
            "init_dlib_age": spec.init_dlib_age,
            "init_faceapi": spec.init_faceapi,
            "dlib_heads": spec.dlib_heads,
            "local_head_from_global": spec.local_head_from_global,
            "fixed_box": list(spec.fixed_box) if isinstance(spec.fixed_box, tuple) else spec.fixed_box,
            "attention_memory": spec.attention_memory,
        },
        "data": {"min_crop_area": spec.min_crop_area, "downscale": spec.downscale, "grayscale": spec.grayscale,
                 "old_photo": spec.old_photo,
                 "batch_size": config.batch_size, "seed": config.seed, "train_view": spec.train_view,
                 "inner_validation": spec.inner_validation},
        "optimisation": {"learning_rate": config.learning_rate, "lr_decay_epochs": list(config.lr_decay_epochs),
                         "lr_decay": config.lr_decay, "momentum": config.momentum, "nesterov": config.nesterov,
                         "weight_decay": config.weight_decay, "freeze_batch_norm": config.freeze_batch_norm,
                         "distill_weight": config.distill_weight},
    }


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
