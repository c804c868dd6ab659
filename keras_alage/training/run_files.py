"""What a run leaves in its folder: checkpoints, the best and final models, the history, the input
audit, and what killed saves left behind; every file written atomically.

Resumable: a checkpoint (model, optimizer, epoch) after every epoch, of which the last two are
kept; a restarted run continues after the last completed epoch. Only the chief's checkpoints are
read; other workers save to a scratch folder (the save is collective) that is never read.
"""

import errno
import glob
import json
import os
import shutil
import tempfile
from typing import Callable, List, Optional

import numpy as np

from keras_alage.models import release
from alage_pipelines import files

HISTORY = "history.jsonl"
BEST_WEIGHTS = "best.weights.h5"
FINAL_MODEL = release.FINAL_MODEL
CHECKPOINTS = "checkpoints"
AUDIT = "input_audit"

# What a killed save leaves in a run folder: our temporary model and weights files, the atomic
# writer's temporaries, and TensorFlow's half-written checkpoint folders.
LEFTOVERS = (".model-*.keras", "*.partial.weights.h5", ".*.tmp", os.path.join(CHECKPOINTS, "ckpt-*_temp"))


def checkpoint_folder(run_dir: str, scratch_task: Optional[str] = None) -> str:
    """The run's checkpoints (the chief's, the ones read back); with `scratch_task` ("worker-1"),
    that worker's scratch folder, emptied of what a killed run left there."""
    own = os.path.join(run_dir, CHECKPOINTS)
    if scratch_task is None:
        return own
    scratch = os.path.join(own, f"{scratch_task}-scratch")
    shutil.rmtree(scratch, ignore_errors=True)  # left by a killed run; never read
    return scratch


def read_history(run_dir: str) -> List[dict]:
    path = os.path.join(run_dir, HISTORY)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_history(run_dir: str, history: List[dict]) -> None:
    """One JSON line per epoch, replaced atomically."""
    text = "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in history)
    files.write_atomically(os.path.join(run_dir, HISTORY), text)


def write_audit(run_dir: str, task: str, epoch: int, model, paths: List[bytes]) -> None:
    """One worker's (`task`, "chief-0") record of one epoch: the paths it trained on (one per
    line) and a digest of its weights, which must be the same on every worker."""
    weights = float(sum(np.sum(np.abs(np.asarray(v, np.float64))) for v in model.trainable_variables))
    record = {"epoch": epoch, "task": task, "weights_abs_sum": weights,
              "paths": sorted(p.decode("utf-8") for p in paths)}
    path = os.path.join(run_dir, AUDIT, task, f"epoch-{epoch:04d}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    files.write_atomically(path, json.dumps(record))


def remove_leftovers(run_dir: str) -> List[str]:
    """Removes what killed saves left in `run_dir` (`LEFTOVERS`); returns them. Only for a folder
    this process holds (`files.folder_lock`): another run's saves in progress look the same."""
    found = sorted(path for pattern in LEFTOVERS for path in glob.glob(os.path.join(run_dir, pattern)))
    for path in found:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)
    return found


def save_model_atomically(model, path: str) -> None:
    """`model.save` to a temporary .keras file beside `path`, then a rename: a kill leaves the
    old file or none, never a truncated one that a rerun would take as finished. The model gets
    the 0644 of other outputs; a full disk names `path`."""
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".model-", suffix=".keras")
    os.close(handle)
    try:
        _naming_the_file(lambda: model.save(temporary), path, temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def save_weights_atomically(model, path: str) -> None:
    """`model.save_weights` to a `.partial.weights.h5` beside `path`, then a rename."""
    temporary = path.replace(".weights.h5", ".partial.weights.h5")
    _naming_the_file(lambda: model.save_weights(temporary), path, temporary)
    os.replace(temporary, path)


def _naming_the_file(save: Callable[[], None], path: str, temporary: str) -> None:
    """Runs `save`; a full disk (or another failed write) is an OSError naming `path`, the file
    the user knows, not the temporary one, nor none (Keras' and h5py's writers wrap it in theirs)."""
    try:
        save()
    except Exception as error:
        code = error.errno if isinstance(error, OSError) else None
        if code is None:  # a writer's own error: a full disk only by its message
            code = next((e for e in (errno.ENOSPC, errno.EDQUOT) if os.strerror(e) in str(error)), None)
            if code is None:
                raise
        elif error.filename not in (None, temporary):
            raise
        raise OSError(code, os.strerror(code), path) from None
