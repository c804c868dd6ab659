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
import math
import shutil
import zipfile
import zlib
from typing import Dict, Optional, Sequence, Tuple

import keras
import numpy as np

from keras_alage import locations
from keras_alage.models import age_model, attention, faceres_import, xception
from alage_pipelines import augment, faces, files, inputs

FORMAT = 1
# v5.1: v3.1 (al_dlib_resnet_utkface) on one centre crop, face-api's network and faceres-deep
DEFAULT_NAME = "al_dlib_faceapi_faceres_v5_1"
CONFIG_FILE, WEIGHTS_FILE = "model.json", "weights.npz"
FINAL_MODEL = "model.keras"  # a run folder's trained model (`training.loop`)
SAVED_MODEL = "saved_model.pb"  # an exported SavedModel folder (`serving.export`)
CROPS = augment.CROPS


def default_path() -> str:
    """The released model that prediction uses when no --model is given: the checkout's
    models/<DEFAULT_NAME>, else an installed wheel's own hash-checked copy (`locations.default_model`:
    FileNotFoundError in one line where there is none or it is not whole)."""
    return locations.default_model(DEFAULT_NAME)


def is_release(path: str) -> bool:
    return os.path.isdir(path) and os.path.exists(os.path.join(path, CONFIG_FILE))


def save(model: keras.Model, directory: str, config: age_model.ModelConfig, face_crop: Optional[faces.CropSpec],
         provenance: dict, crops: str = "ten") -> str:
    """Writes `model` as a release folder (atomically, file by file); returns its weights' SHA-256.

    `crops` ("ten" or "center") is how prediction averages a face by default, as chosen on
    validation data for this model."""
    if tuple(age_model.class_ages_of(model)) != tuple(config.classes().values):
        raise ValueError(f"{model.name}: class ages differ from age_classes={config.age_classes!r}.")
    if crops not in CROPS:
        raise ValueError(f"crops must be one of {CROPS}; received {crops!r}.")
    payload, digest, count = _weights_payload(model, np.float16)
    os.makedirs(directory, exist_ok=True)
    files.write_atomically(os.path.join(directory, WEIGHTS_FILE), payload)
    description = {
        "format": FORMAT,
        "model": dataclasses.asdict(config),
        "class_ages": list(age_model.class_ages_of(model)),
        "trained_heads": list(age_model.trained_heads(model)),
        "face_crop": face_crop.to_json() if face_crop else None,
        "crops": crops,
        "weights": {"file": WEIGHTS_FILE, "dtype": "float16", "sha256": digest, "variables": count},
        "provenance": provenance,
    }
    write_description(directory, description)
    return digest


def save_checked(model: keras.Model, directory: str, config: age_model.ModelConfig,
                 face_crop: Optional[faces.CropSpec], provenance: dict, crops: str, probes: np.ndarray,
                 max_age_difference: float) -> Tuple[str, float]:
    """`save`s into a staging folder beside `directory`, reloads it in float32 and compares its ages
    on `probes` with `model`'s; only within `max_age_difference` years does it replace `directory`
    (an earlier release there stays otherwise). Returns (weights' SHA-256, largest difference)."""
    directory = os.path.normpath(directory)
    staging = directory + ".staging"
    shutil.rmtree(staging, ignore_errors=True)
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
    replace_folder(staging, directory)
    return digest, difference


def replace_folder(staging: str, directory: str) -> None:
    """Moves a complete `staging` folder to `directory` (`files.replace_folder`), the earlier one
    set aside at `<directory>.retired` first and removed after, so `directory` is never half old
    and half new; what a killed run left there is put back or removed first."""
    files.replace_folder(staging, directory, os.path.normpath(directory) + ".retired")


FACEAPI_FILE = "faceapi_weights.npz"


def save_faceapi(directory: str, net: keras.Model, cut: dict, combination: dict, source: str) -> str:
    """Adds face-api's imported network (every variable in float32: its uint8 weights dequantised
    exactly) to a release folder, with the rectangle it cuts from the release's face crop and the
    rule that combines its age with the AL model's; returns the weights' SHA-256."""
    description = read_description(directory)
    payload, digest, count = _weights_payload(net, np.float32)
    files.write_atomically(os.path.join(directory, FACEAPI_FILE), payload)
    description["faceapi"] = {
        "weights": {"file": FACEAPI_FILE, "dtype": "float32", "sha256": digest, "variables": count},
        "input_size": int(net.input_shape[1]), "cut": dict(cut), "combination": dict(combination),
        "source": source,
    }
    write_description(directory, description)
    return digest


FACERES_FILE = "faceres_weights.npz"


def save_faceres(directory: str, net: keras.Model, cut: dict, readout: str, source: str) -> str:
    """Adds HSE's faceres-deep (imported, float32 as the package stores it: in float16 its top-2
    readout flipped classes and moved v5's answer by 0.3 years) with its rectangle of the release's
    crop and its readout; returns the weights' SHA-256."""
    if readout not in faceres_import.READOUTS:
        raise ValueError(f"faceres readout must be one of {faceres_import.READOUTS}; received {readout!r}.")
    description = read_description(directory)
    payload, digest, count = _weights_payload(net, np.float32)
    files.write_atomically(os.path.join(directory, FACERES_FILE), payload)
    description["faceres"] = {
        "weights": {"file": FACERES_FILE, "dtype": "float32", "sha256": digest, "variables": count},
        "input_size": faceres_import.INPUT_SIZE, "cut": dict(cut), "readout": readout, "source": source,
    }
    write_description(directory, description)
    return digest


def load_faceres(directory: str, description: dict) -> Optional[keras.Model]:
    """A release's faceres-deep network, checked like the main weights; None where it has none."""
    member = description.get("faceres")
    if member is None:
        return None
    net = faceres_import.build_faceres_net()
    _assign_all(net, *_checked_weights(directory, member["weights"], net))
    return net


def record_combination(directory: str, combination: dict) -> None:
    """Stores how a release's members are combined (`serving.ensemble.Combination.to_json`)."""
    description = read_description(directory)
    description["combination"] = dict(combination)
    write_description(directory, description)


def recorded_combination(description: dict) -> dict:
    """A release's combination: its own record, else where release v4 kept it (face-api's entry)."""
    return dict(description.get("combination") or description["faceapi"]["combination"])


def record_intervals(directory: str, table: dict) -> None:
    """Stores a calibrated interval table (`evaluation.intervals.IntervalTable.to_json`) in model.json."""
    description = read_description(directory)
    description["intervals"] = dict(table)
    write_description(directory, description)


def load_faceapi(directory: str, description: dict) -> Optional[keras.Model]:
    """A release's face-api network, checked like the main weights; None for a one-network release."""
    member = description.get("faceapi")
    if member is None:
        return None
    net = xception.build_faceapi_age_net(int(member["input_size"]))
    _assign_all(net, *_checked_weights(directory, member["weights"], net))
    return net


# Room an .npy member needs besides its data (numpy pads its header to 64 or 128 bytes), and what a
# zip archive may add to each member and in all: a weights file is refused, unread, beyond these.
NPY_HEADER_BYTES = 4096
ZIP_MEMBER_BYTES = 1024


def _checked_weights(directory: str, record: dict, model: keras.Model) -> Tuple[str, Dict[str, np.ndarray]]:
    """(path, arrays by variable path) of a weights file model.json names for `model`'s variables,
    refused unless inside the folder, a regular file no larger than those variables can be stored
    in, of the recorded SHA-256, and holding exactly those arrays in the recorded dtype, each
    member's declared inflated size checked before it is inflated (a zip bomb inflated to 13 GB
    before it was refused). Memory stays within the file and the model's own size."""
    weights_path = inside(directory, record["file"])
    dtype = np.dtype(record["dtype"])
    shapes = {v.path: tuple(int(d) for d in v.shape) for v in model.weights}
    needs = {name: math.prod(shape) * dtype.itemsize + NPY_HEADER_BYTES for name, shape in shapes.items()}
    limit = sum(needs.values()) + ZIP_MEMBER_BYTES * len(needs) + (1 << 20)
    try:
        payload = inputs.read_bounded(weights_path, limit, f"the {len(needs)} variables {CONFIG_FILE} describes")
    except FileNotFoundError:
        raise FileNotFoundError(f"{weights_path} is missing (a clone without Git LFS or a partial copy?).") from None
    if hashlib.sha256(payload).hexdigest() != record["sha256"]:
        raise ValueError(f"{weights_path}: SHA-256 differs from {CONFIG_FILE}; the file is damaged or not this model's.")
    return weights_path, _npz_arrays(payload, weights_path, shapes, needs, dtype)


def _npz_arrays(payload: bytes, weights_path: str, shapes: Dict[str, tuple], needs: Dict[str, int],
                dtype: np.dtype) -> Dict[str, np.ndarray]:
    """The arrays of an .npz payload, each member's inflated size, shape and dtype checked against
    the variable it is for before its data is read; raises ValueError naming the file."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(payload))
    except zipfile.BadZipFile:
        raise ValueError(f"{weights_path}: not an .npz archive.") from None
    with archive:
        members = {(info.filename[:-4] if info.filename.endswith(".npy") else info.filename): info
                   for info in archive.infolist()}
        if set(members) != set(shapes) or len(members) != len(archive.infolist()):
            missing, extra = sorted(set(shapes) - set(members)), sorted(set(members) - set(shapes))
            raise ValueError(f"{weights_path}: variables differ from the architecture (missing {missing[:3]}, "
                             f"unexpected {extra[:3]}).")
        for name, info in members.items():
            if info.file_size > needs[name]:
                raise ValueError(f"{weights_path}: {info.filename} inflates to {info.file_size:,} bytes where "
                                 f"{name} {shapes[name]} needs {needs[name]:,}; refused before inflating it.")
        arrays = {}
        for name, info in members.items():
            try:
                with archive.open(info) as member:
                    data = member.read(needs[name] + 1)  # zipfile stops at the declared size and checks its CRC
            except (zipfile.BadZipFile, zlib.error, EOFError) as error:
                raise ValueError(f"{weights_path}: {info.filename} cannot be inflated ({error}).") from None
            if len(data) > needs[name]:
                raise ValueError(f"{weights_path}: {info.filename} inflates past the {needs[name]:,} bytes {name} "
                                 "needs; refused.")
            arrays[name] = _npy_array(data, f"{weights_path}: {info.filename}", shapes[name], dtype)
    return arrays


def _npy_array(data: bytes, shown: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """An .npy member's array, its header's shape and dtype checked before its data is read."""
    stream = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(stream)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"npy format version {version}")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        found_shape, _, found_dtype = read_header(stream)
    except ValueError as error:
        raise ValueError(f"{shown} is not an array file ({error}).") from None
    if tuple(found_shape) != shape or found_dtype != dtype:
        raise ValueError(f"{shown} holds {tuple(found_shape)} {found_dtype} where its variable is {shape} {dtype}.")
    stream.seek(0)
    try:
        return np.lib.format.read_array(stream, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{shown} is not an array file ({error}).") from None


def _assign_all(model: keras.Model, weights_path: str, arrays: Dict[str, np.ndarray]) -> None:
    for variable in model.weights:
        variable.assign(arrays[variable.path].astype(variable.dtype))


def record_prior(directory: str, prior: Sequence[float], smoothing: float, measured_on: str) -> None:
    """Stores a release's own age prior (`prior_shift.source_prior` of its answers on its training
    faces) and the smoothing `prior_shift.adapt` uses with it, in model.json (atomically)."""
    description = read_description(directory)
    classes = len(description["class_ages"])
    if len(prior) != classes or not np.isclose(float(np.sum(prior)), 1.0, atol=1e-4) or min(prior) <= 0:
        raise ValueError(f"a prior over the model's {classes} classes must be positive and sum to 1.")
    description["prior"] = {"source": [float(p) for p in prior], "smoothing": float(smoothing),
                            "measured_on": measured_on}
    write_description(directory, description)


def recorded_prior(path: str) -> Optional[dict]:
    """A release's recorded prior ({"source", "smoothing", "measured_on"}) with the ages of its
    classes ("class_ages"), as `photos.adapt_to_population` takes it; None where it has none."""
    return open_model_path(path).prior if is_release(path) else None


def recorded_crops(path: str) -> Optional[str]:
    """The crops a released model predicts with ("ten" where a release predates the record);
    None for anything that is not a release."""
    return open_model_path(path).crops if is_release(path) else None


def inside(directory: str, name: str) -> str:
    """A file a model description names, refused unless it resolves inside the model's folder
    (before anything opens it)."""
    folder = os.path.realpath(directory)
    path = os.path.realpath(os.path.join(directory, str(name)))
    if os.path.commonpath([folder, path]) != folder or path == folder:
        raise ValueError(f"{os.path.join(directory, CONFIG_FILE)} names {name!r}, which is outside its folder; "
                         "refused.")
    return path


def _weights_payload(model: keras.Model, dtype) -> Tuple[bytes, str, int]:
    """(compressed .npz of every variable by path in `dtype`, its SHA-256, variable count)."""
    arrays = {variable.path: np.asarray(variable.numpy(), dtype) for variable in model.weights}
    if len(arrays) != len(model.weights):
        raise ValueError(f"{model.name}: variable paths are not unique; cannot name its weights.")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    payload = buffer.getvalue()
    return payload, hashlib.sha256(payload).hexdigest(), len(arrays)


def write_description(directory: str, description: dict) -> None:
    """model.json, atomically."""
    files.write_atomically(os.path.join(directory, CONFIG_FILE), json.dumps(description, indent=1) + "\n")


MAX_DESCRIPTION_BYTES = 16 << 20  # model.json: ours are tens of kilobytes
WEIGHT_DTYPES = ("float16", "float32")
# What a description may ask to be built: far beyond any release, far below what fills a machine.
MODEL_BOUNDS = {"depth": (1, 1000), "ror_levels": (1, 3), "input_size": (32, 1024), "lstm_units": (1, 4096)}


def read_description(directory: str) -> dict:
    """A release's model.json, refused in one ValueError naming it unless it is a regular file of at
    most MAX_DESCRIPTION_BYTES holding a description of this format in the shape `check_description`
    reads (never a pipe waited on, a list, a missing key or JSON nested past the parser's depth)."""
    path = os.path.join(directory, CONFIG_FILE)
    try:
        text = inputs.read_bounded(path, MAX_DESCRIPTION_BYTES, "a model description")
    except FileNotFoundError:
        raise FileNotFoundError(f"{directory} is not a released model: no {CONFIG_FILE}.") from None
    try:
        description = json.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text.") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    except RecursionError:
        raise ValueError(f"{path} is nested too deep to be a model description.") from None
    if not isinstance(description, dict):
        raise ValueError(f"{path} holds a JSON {type(description).__name__}, not a model description.")
    if description.get("format") != FORMAT:
        raise ValueError(f"{path}: release format {description.get('format')!r}, this code reads {FORMAT}.")
    check_description(path, description)
    return description


def _weights_record(path: str, record, where: str) -> None:
    if not (isinstance(record, dict) and isinstance(record.get("file"), str)
            and isinstance(record.get("sha256"), str) and len(record["sha256"]) == 64
            and record.get("dtype") in WEIGHT_DTYPES):
        raise ValueError(f"{path}: {where} must name a file, its sha256 and a dtype of {WEIGHT_DTYPES}; "
                         f"found {str(record)[:80]}.")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_description(path: str, description: dict) -> None:
    """Refuses (ValueError naming `path`) a description whose entries are not of the shape the
    loaders read: checked here, once, so no loader meets a list for a dict, a missing key or an
    architecture too large to build."""
    def refuse(what: str):
        raise ValueError(f"{path}: {what}.")

    missing = [key for key in ("model", "class_ages", "trained_heads", "weights") if key not in description]
    if missing:
        refuse(f"no {', '.join(missing)} (not a complete model description)")
    _weights_record(path, description["weights"], "'weights'")
    config = description["model"]
    defaults = {field.name: field.default for field in dataclasses.fields(age_model.ModelConfig)}
    if not isinstance(config, dict) or set(config) - set(defaults):
        refuse(f"'model' must be an object of {sorted(defaults)}; found {str(config)[:80]}")
    for key, value in config.items():
        default = defaults[key]
        fits = (_number(value) if isinstance(default, float) else
                isinstance(value, int) and not isinstance(value, bool) if isinstance(default, int) else
                isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and 1 <= v <= 64 for v in value)
                if isinstance(default, tuple) else isinstance(value, type(default)))
        low, high = MODEL_BOUNDS.get(key, (None, None))
        if not fits or (low is not None and not low <= value <= high):
            refuse(f"'model' {key} {value!r} is not a value this model builds")
    ages = description["class_ages"]
    if not (isinstance(ages, list) and 2 <= len(ages) <= 1000 and all(_number(a) for a in ages)):
        refuse("'class_ages' must be a list of 2 to 1000 numbers")
    heads = description["trained_heads"]
    if not (isinstance(heads, list) and all(isinstance(h, str) for h in heads)):
        refuse("'trained_heads' must be a list of head names")
    if description.get("face_crop") is not None:
        try:
            faces.CropSpec.from_json(description["face_crop"])
        except (TypeError, ValueError) as error:
            refuse(f"'face_crop' is not a face crop ({error})")
    if description.get("crops", "ten") not in CROPS:
        refuse(f"'crops' must be one of {CROPS}")
    member = description.get("faceapi")
    if member is not None:
        if not (isinstance(member, dict) and isinstance(member.get("cut"), dict)
                and isinstance(member.get("combination", {}), dict)
                and isinstance(member.get("input_size"), int) and 32 <= member["input_size"] <= 1024):
            refuse("'faceapi' must hold its weights, an input_size of 32-1024 px and a cut")
        _weights_record(path, member.get("weights"), "'faceapi' weights")
    member = description.get("faceres")
    if member is not None:
        if not (isinstance(member, dict) and isinstance(member.get("cut"), dict)
                and member.get("readout") in faceres_import.READOUTS and "faceapi" in description):
            refuse(f"'faceres' must hold its weights, a cut and a readout of {faceres_import.READOUTS}, beside 'faceapi'")
        _weights_record(path, member.get("weights"), "'faceres' weights")
    for key in ("intervals", "prior", "provenance", "combination"):
        if description.get(key) is not None and not isinstance(description[key], dict):
            refuse(f"'{key}' must be an object")
    prior = description.get("prior")
    if prior is not None and not (isinstance(prior.get("source"), list) and len(prior["source"]) == len(ages)
                                  and all(_number(p) for p in prior["source"]) and _number(prior.get("smoothing"))):
        refuse("'prior' must hold a source probability per class and a smoothing number")


def load(directory: Optional[str] = None) -> Tuple[keras.Model, Optional[faces.CropSpec], dict]:
    """(model in float32 with its attention memory frozen, face crop it expects, description)."""
    directory = directory or default_path()
    description = read_description(directory)
    config = {k: tuple(v) if isinstance(v, list) else v for k, v in description["model"].items()}
    try:
        config = age_model.ModelConfig(**config)
        model = age_model.build_age_model(config, class_ages=description["class_ages"])
        age_model.set_trained_heads(model, description["trained_heads"])
    except (TypeError, ValueError) as error:
        raise ValueError(f"{os.path.join(directory, CONFIG_FILE)}: not a model this code builds ({error}).") from None
    _assign_all(model, *_checked_weights(directory, description["weights"], model))
    attention.freeze_attention_state(model)
    return model, faces.recorded_crop(description), description


def load_model(path: str) -> keras.Model:
    """The one loader of a trained age model: a .keras file (custom layers registered on import)
    or a released model's folder."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"Model {path} not found.")
    if is_release(path):
        return load(path)[0]
    return keras.models.load_model(path, compile=False)


@dataclasses.dataclass(frozen=True)
class ModelPath:
    """A model path opened once: what it is and what was recorded with it.

    kind: "release" (a folder with model.json), "saved_model" (an export) or "keras" (a .keras
    file, usually in a run folder); face_crop: how its faces were cut (model.json, or
    face_crop.json in the export's assets.extra / beside the .keras); crops: a release's chosen
    evaluation crops; prior: a release's recorded age prior with its class ages."""

    path: str
    kind: str
    face_crop: Optional[faces.CropSpec]
    crops: Optional[str] = None
    prior: Optional[dict] = None
    description: Optional[dict] = None

    @property
    def two_networks(self) -> bool:
        """A release whose answer combines the AL model with face-api's network (`load_faceapi`)."""
        return bool(self.description and "faceapi" in self.description)

    def load(self) -> keras.Model:
        """The Keras model (a release's in float32); a SavedModel is loaded by `serving.photos`."""
        if self.kind == "saved_model":
            raise ValueError(f"{self.path} is an exported SavedModel, not a Keras model.")
        return load(self.path)[0] if self.kind == "release" else keras.models.load_model(self.path, compile=False)


def open_model_path(path: str) -> ModelPath:
    """Reads what a model path records in one visit (see `ModelPath`)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist.")
    if is_release(path):
        description = read_description(path)
        prior = dict(description["prior"], class_ages=description["class_ages"]) if "prior" in description else None
        return ModelPath(path, "release", faces.recorded_crop(description), description.get("crops", "ten"), prior,
                         description)
    if os.path.isdir(path) and os.path.exists(os.path.join(path, SAVED_MODEL)):
        return ModelPath(path, "saved_model", faces.read_crop_spec(os.path.join(path, "assets.extra")))
    for folder in (path, os.path.dirname(path)):
        if os.path.isdir(folder) and os.path.exists(os.path.join(folder, faces.CROP_FILE)):
            return ModelPath(path, "keras", faces.read_crop_spec(folder))
    return ModelPath(path, "keras", None)
