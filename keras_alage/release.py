"""Released models: a small folder in the repository that `scripts/predict.py` uses by default.

    models/<name>/model.json    architecture, class ages, trained heads, face crop, provenance
    models/<name>/weights.npz   every variable in float16 (half the size of a .keras file)

`load` rebuilds the float32 model from `model.json` and checks the weights' SHA-256 and names
against it, so a truncated or mismatched file is refused with a message, never half-loaded.
"""

import dataclasses
import hashlib
import io
import json
import os
import shutil
from typing import Dict, Mapping, Optional, Sequence, Tuple

import keras
import numpy as np

from keras_alage import attention
from keras_alage import model as model_lib
from pipelines import augment, faces, files

FORMAT = 1
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS_DIR = os.path.join(REPO_ROOT, "models")
DEFAULT_NAME = "al_dlib_resnet_utkface"
CONFIG_FILE, WEIGHTS_FILE = "model.json", "weights.npz"
CROPS = augment.CROPS


def default_path() -> str:
    """The released model that prediction uses when no --model is given."""
    return os.path.join(MODELS_DIR, DEFAULT_NAME)


def is_release(path: str) -> bool:
    return os.path.isdir(path) and os.path.exists(os.path.join(path, CONFIG_FILE))


def save(model: keras.Model, directory: str, config: model_lib.ModelConfig, face_crop: Optional[faces.CropSpec],
         provenance: dict, crops: str = "ten") -> str:
    """Writes `model` as a release folder (atomically, file by file); returns its weights' SHA-256.

    `crops` ("ten" or "center") is how prediction averages a face by default, as chosen on
    validation data for this model."""
    if tuple(model_lib.class_ages_of(model)) != tuple(config.classes().values):
        raise ValueError(f"{model.name}: class ages differ from age_classes={config.age_classes!r}.")
    if crops not in CROPS:
        raise ValueError(f"crops must be one of {CROPS}; received {crops!r}.")
    arrays = {variable.path: np.asarray(variable.numpy(), np.float16) for variable in model.weights}
    if len(arrays) != len(model.weights):
        raise ValueError(f"{model.name}: variable paths are not unique; cannot name its weights.")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest()
    os.makedirs(directory, exist_ok=True)
    files.write_atomically(os.path.join(directory, WEIGHTS_FILE), payload)
    description = {
        "format": FORMAT,
        "model": dataclasses.asdict(config),
        "class_ages": list(model_lib.class_ages_of(model)),
        "trained_heads": list(model_lib.trained_heads(model)),
        "face_crop": face_crop.to_json() if face_crop else None,
        "crops": crops,
        "weights": {"file": WEIGHTS_FILE, "dtype": "float16", "sha256": digest, "variables": len(arrays)},
        "provenance": provenance,
    }
    files.write_atomically(os.path.join(directory, CONFIG_FILE), json.dumps(description, indent=1) + "\n")
    return digest


def save_checked(model: keras.Model, directory: str, config: model_lib.ModelConfig,
                 face_crop: Optional[faces.CropSpec], provenance: dict, crops: str, probes: np.ndarray,
                 max_age_difference: float) -> Tuple[str, float]:
    """`save`s into a staging folder beside `directory`, reloads it in float32 and compares its ages
    on `probes` with `model`'s; only within `max_age_difference` years does it replace `directory`
    (an earlier release there stays otherwise). Returns (weights' SHA-256, largest difference)."""
    directory = os.path.normpath(directory)
    staging, retired = directory + ".staging", directory + ".retired"
    for leftover in (staging, retired):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        digest = save(model, staging, config, face_crop, provenance, crops)
        loaded, _, _ = load(staging)
        difference = float(np.abs(loaded(probes)["age"].numpy() - model(probes)["age"].numpy()).max())
        if not difference <= max_age_difference:
            raise ValueError(f"fp16 release answers differ from the run's model by {difference:.3f} years "
                             f"(at most {max_age_difference:g} allowed); {directory} was left as it was.")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if os.path.exists(directory):
        os.rename(directory, retired)
    os.rename(staging, directory)
    shutil.rmtree(retired, ignore_errors=True)
    return digest, difference


def local_weight_maes(report_path: str) -> Dict[str, float]:
    """Local weight -> combined MAE over a report's folds (pooled by record count), from
    `scripts/evaluate.py --local_weights`."""
    with open(report_path, encoding="utf-8") as f:
        return pooled_weight_maes(json.load(f)["folds"])


def pooled_weight_maes(folds: Mapping[str, dict]) -> Dict[str, float]:
    """Local weight -> combined MAE pooled by count over folds {name: {"count", "local_weight_mae"}}."""
    totals: dict = {}
    for result in folds.values():
        if "local_weight_mae" not in result:
            raise ValueError("no local-weight sweep in it; run scripts/evaluate.py with --local_weights.")
        for weight, mae in result["local_weight_mae"].items():
            errors, count = totals.get(weight, (0.0, 0))
            totals[weight] = (errors + mae * result["count"], count + result["count"])
    if not totals:
        raise ValueError("it holds no fold.")
    return {weight: errors / count for weight, (errors, count) in totals.items()}


def mean_over_views(report_paths: Sequence[str]) -> Dict[str, float]:
    """Local weight -> the mean of its MAE over several reports (views of the validation faces,
    e.g. as built and as old photos), each report weighing alike; weights all of them swept."""
    if not report_paths:
        raise ValueError("no validation report given.")
    return mean_of_views([local_weight_maes(path) for path in report_paths], ", ".join(report_paths))


def mean_of_views(maes: Sequence[Mapping[str, float]], names: str = "the views") -> Dict[str, float]:
    """Local weight -> the mean of its MAE over the views' sweeps, each alike; weights all swept."""
    common = set(maes[0]).intersection(*maes[1:])
    if not common:
        raise ValueError(f"{names} sweep no local weight in common.")
    return {weight: sum(m[weight] for m in maes) / len(maes) for weight in common}


def lowest_weight(means: Mapping[str, float]) -> float:
    """The weight of the lowest mean MAE (ties: the smaller weight)."""
    return float(min(means, key=lambda w: (means[w], float(w))))


def best_local_weight(*report_paths: str) -> float:
    """The local weight with the lowest `mean_over_views` of the reports (ties: the smaller)."""
    return lowest_weight(mean_over_views(report_paths))


def nested_local_weight(view_paths: Sequence[str], population_folds: Mapping[str, dict]) -> Dict[str, float]:
    """For each fold of a second population: the local weight chosen as `best_local_weight` would
    choose it over the fixed views and that population's *other* folds (one more view, pooled), so
    the fold's MAE at its weight is an honest estimate of choosing on that population.

    Args:
      view_paths: reports of the fixed views (e.g. the training set's held-out faces).
      population_folds: {fold: {"count", "local_weight_mae"}} of the second population (subject folds).
    """
    if len(population_folds) < 2:
        raise ValueError("a nested choice needs at least two folds of the second population.")
    views = [local_weight_maes(path) for path in view_paths]
    chosen = {}
    for held in population_folds:
        others = pooled_weight_maes({f: r for f, r in population_folds.items() if f != held})
        chosen[held] = lowest_weight(mean_of_views(views + [others], "the views and the population's folds"))
    return chosen


def choose_run(reports_of: Mapping[str, Sequence[str]]) -> Tuple[str, float, Dict[str, Dict[str, float]]]:
    """The run and local weight of the lowest `mean_over_views` over all runs (ties: the first
    run given, the smaller weight), and the table run -> weight -> mean MAE it was read from."""
    if not reports_of:
        raise ValueError("no run given.")
    table = {run: mean_over_views(paths) for run, paths in reports_of.items()}
    order = {run: i for i, run in enumerate(reports_of)}
    run, weight = min(((r, w) for r, means in table.items() for w in means),
                      key=lambda rw: (table[rw[0]][rw[1]], order[rw[0]], float(rw[1])))
    return run, float(weight), table


def record_prior(directory: str, prior: Sequence[float], smoothing: float, measured_on: str) -> None:
    """Stores a release's own age prior (`prior_shift.source_prior` of its answers on its training
    faces) and the smoothing `prior_shift.adapt` uses with it, in model.json (atomically)."""
    description = read_description(directory)
    classes = len(description["class_ages"])
    if len(prior) != classes or not np.isclose(float(np.sum(prior)), 1.0, atol=1e-4) or min(prior) <= 0:
        raise ValueError(f"a prior over the model's {classes} classes must be positive and sum to 1.")
    description["prior"] = {"source": [float(p) for p in prior], "smoothing": float(smoothing),
                            "measured_on": measured_on}
    files.write_atomically(os.path.join(directory, CONFIG_FILE), json.dumps(description, indent=1) + "\n")


def recorded_prior(path: str) -> Optional[dict]:
    """A release's recorded prior ({"source", "smoothing", "measured_on"}) with the ages of its
    classes ("class_ages"), as `photos.adapt_to_population` takes it; None where it has none."""
    description = read_description(path) if is_release(path) else {}
    if "prior" not in description:
        return None
    return dict(description["prior"], class_ages=description["class_ages"])


def recorded_crops(path: str) -> Optional[str]:
    """The crops a released model predicts with ("ten" where a release predates the record);
    None for anything that is not a release."""
    return read_description(path).get("crops", "ten") if is_release(path) else None


def read_description(directory: str) -> dict:
    path = os.path.join(directory, CONFIG_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            description = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{directory} is not a released model: no {CONFIG_FILE}.") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if description.get("format") != FORMAT:
        raise ValueError(f"{path}: release format {description.get('format')!r}, this code reads {FORMAT}.")
    return description


def load(directory: Optional[str] = None) -> Tuple[keras.Model, Optional[faces.CropSpec], dict]:
    """(model in float32 with its attention memory frozen, face crop it expects, description)."""
    directory = directory or default_path()
    description = read_description(directory)
    weights_path = os.path.join(directory, description["weights"]["file"])
    try:
        with open(weights_path, "rb") as f:
            payload = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{weights_path} is missing (a clone without Git LFS or a partial copy?).") from None
    if hashlib.sha256(payload).hexdigest() != description["weights"]["sha256"]:
        raise ValueError(f"{weights_path}: SHA-256 differs from {CONFIG_FILE}; the file is damaged or not this model's.")
    config = model_lib.ModelConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in description["model"].items()})
    model = model_lib.build_age_model(config, class_ages=description["class_ages"])
    with np.load(io.BytesIO(payload)) as arrays:
        names = {v.path for v in model.weights}
        if set(arrays.files) != names:
            missing, extra = sorted(names - set(arrays.files)), sorted(set(arrays.files) - names)
            raise ValueError(f"{weights_path}: variables differ from the architecture (missing {missing[:3]}, "
                             f"unexpected {extra[:3]}).")
        for variable in model.weights:
            variable.assign(arrays[variable.path].astype(variable.dtype))
    model_lib.set_trained_heads(model, description["trained_heads"])
    attention.freeze_attention_state(model)
    crop = faces.CropSpec.from_json(description["face_crop"]) if description.get("face_crop") else None
    return model, crop, description


MODEL_FLAGS = {"depth": int, "ror_levels": int, "input_size": int, "age_classes": str, "local_weight": float,
               "max_box_size": float, "layout": str}


def config_from_run(flags_path: str) -> model_lib.ModelConfig:
    """The architecture a run trained, from the flags.txt that train.py wrote beside it."""
    values = {}
    with open(flags_path, encoding="utf-8") as f:
        for line in f:
            key, _, value = line.strip().lstrip("-").partition("=")
            if key in MODEL_FLAGS:
                values[key] = MODEL_FLAGS[key](value)
    return model_lib.ModelConfig(**values)
