"""The AL model's release (one network: v2, v3.1): a trained run's model written as a release
folder (fp16 weights + model.json, refused if its answers move), and its own age prior measured on
its training faces and recorded in it (for `predict.py --adapt_prior`)."""

import dataclasses
import json
import os
from typing import Optional, Sequence

import numpy as np

from keras_alage.evaluation import metrics, run_folders
from keras_alage.models import attention, release
from keras_alage.serving import prior_shift
from keras_alage.studies.releases import al_choice
from keras_alage.training import fold_runs
from alage_pipelines import build, dataset, faces, files


def release_run(run_dir: str, output: str, crop: faces.CropSpec, crops: str, local_weight: Optional[float] = None,
                local_weight_from: Sequence[str] = (), provenance_path: Optional[str] = None,
                max_age_difference: float = 0.05, probe_build: Optional[str] = None, probe_faces: int = 64) -> str:
    """Writes the run's model.keras as a release folder at `output` (the architecture from the run's
    flags.txt; `crop`: how photos are cut like the training faces; `crops`: prediction's default),
    with the local weight given or chosen on validation reports (`local_weight_from`, the lowest
    mean combined MAE), and `provenance_path`'s facts for the model card. The fp16 weights are
    probed on `probe_build`'s first test faces (else random images) and refused beyond
    `max_age_difference` years. Returns the line to print; a missing input is FileNotFoundError,
    an unusable one ValueError."""
    model_path = os.path.join(run_dir, "model.keras")
    flags_path = os.path.join(run_dir, "flags.txt")
    for path in (model_path, flags_path):
        if not os.path.exists(path):
            raise FileNotFoundError(f"--run_dir={run_dir}: {os.path.basename(path)} not found; train it first.")
    provenance = {}
    if provenance_path:
        try:
            with open(provenance_path, encoding="utf-8") as f:
                provenance = json.load(f)
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"--provenance={provenance_path}: {error}")
    model = release.load_model(model_path)
    attention.freeze_attention_state(model)
    config = fold_runs.config_from_run(flags_path)
    said = []
    if local_weight_from:
        try:
            local_weight = al_choice.best_local_weight(*local_weight_from)
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"--local_weight_from={','.join(local_weight_from)}: {error}")
        said.append(f"local weight {local_weight:g}: lowest validation MAE in {', '.join(local_weight_from)}")
        chosen_on = [files.portable_path(path) for path in local_weight_from]
        provenance = dict(provenance, local_weight_chosen_on=chosen_on[0] if len(chosen_on) == 1 else chosen_on)
    if local_weight is not None:
        config = dataclasses.replace(config, local_weight=local_weight)
        model.get_layer("combined_probs").local_weight = local_weight
    if probe_build:
        try:
            probes = dataset.first_test_faces(build.Build.open(probe_build, verify=True), probe_faces,
                                              config.input_size)
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"--probe_build={probe_build}: {error}")
    else:
        probes = np.random.default_rng(0).normal(0, 1, (8, config.input_size, config.input_size, 3)).astype(np.float32)
    digest, difference = release.save_checked(model, output, config, crop, provenance, crops, probes,
                                              max_age_difference)
    size = sum(os.path.getsize(os.path.join(output, n)) for n in os.listdir(output))
    said.append(f"released {output}: {size / 2**20:.1f} MiB, weights sha256 {digest}, fp16 vs fp32 largest age "
                f"difference {difference:.4f} years on {len(probes)} {'faces' if probe_build else 'random images'}")
    return "\n".join(said)


def chosen_smoothing(path: str) -> float:
    """The prior smoothing `benchmarks/prior_shift.py` chose (its OUTPUT.json)."""
    try:
        with open(path, encoding="utf-8") as f:
            return float(json.load(f)["chosen_smoothing"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"--smoothing_from={path}: no chosen smoothing in it ({error}).")


def record_prior(model_dir: str, data_dir: str, smoothing: float) -> str:
    """Measures the release's own age prior (its mean answer, combined head, centre crop, over the
    build's training side) and records it with `smoothing` in its model.json; returns the line to
    print."""
    if not release.is_release(model_dir):
        raise ValueError(f"--model={model_dir} is not a released model's folder (model.json).")
    if smoothing < 0:
        raise ValueError(f"--smoothing must be 0 or more; received {smoothing}.")
    model, _, description = release.load(model_dir)
    answers = run_folders.answer_side(model, data_dir, "train")
    prior = prior_shift.source_prior(answers["combined"])
    release.record_prior(model_dir, prior, smoothing, f"{os.path.basename(os.path.normpath(data_dir))} training side, "
                                                      f"{len(answers['combined'])} faces, centre crop")
    mean = float(metrics.expected_age([prior], description["class_ages"])[0])
    return (f"recorded the prior of {model_dir} ({len(answers['combined'])} training faces; mean age {mean:.1f}, "
            f"smoothing {smoothing:g})")
