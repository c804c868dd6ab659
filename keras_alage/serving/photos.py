"""Ages of the faces in ordinary photos: detect, crop as in training, predict, report, draw.

Faces are cut with the same `alage_pipelines.faces.CropSpec` as the TFRecord build and encoded as
JPEG like the stored crops, then answered by the same graph as the exported SavedModel
(`export.AgeServer`), so a photo gets the answer TF Serving would give for its crops.
"""

import collections
import csv
import dataclasses
import io
import json
import os
import struct
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import cv2
import numpy as np
import tensorflow as tf

from keras_alage.evaluation import intervals
from keras_alage.models import attention, faceapi_import, release
from keras_alage.serving import ensemble, export, face_detectors, prior_shift
from keras_alage.serving.options import NO_FACE
from alage_pipelines import augment, faces, files, images, inputs


@dataclasses.dataclass
class FaceAge:
    """One face of a photo and its predicted ages.

    `corners` are the face box's corners in photo pixels; `attention` the attention box's
    corners in photo pixels. `local_age` and `attention` are None for a model whose local
    head no attention stage trained (it answers with its global head). A face the model answered
    with a non-finite number (inf or nan years) is refused: its `error` says so and its ages are None.
    """

    face: int
    age: Optional[float]  # None only for a refused face (`error`)
    age_std: Optional[float]  # spread of the predicted age distribution; None from older exports
    global_age: Optional[float]
    local_age: Optional[float]
    confidence: float
    method: str
    corners: List[List[float]]
    attention: Optional[List[List[float]]]
    prior_faces: Optional[int] = None  # answered under the age prior of this many faces (`adapt_to_population`)
    age_low: Optional[float] = None  # the release's calibrated interval (`evaluation.intervals`), where it has one
    age_high: Optional[float] = None
    faceapi_age: Optional[float] = None  # face-api's own answer, in a release with several networks
    faceres_age: Optional[float] = None  # faceres-deep's own answer, in a release that holds it
    error: Optional[str] = None  # why the face is refused (a non-finite answer); None for an answer


@dataclasses.dataclass
class PhotoResult:
    """A photo's faces; `probs` [faces, classes] are the combined answers (not written out)."""

    path: str
    faces: List[FaceAge]
    error: Optional[str] = None
    probs: Optional[np.ndarray] = dataclasses.field(default=None, repr=False, compare=False)
    note: Optional[str] = None  # what was left out of an answered photo (`MAX_FACES`)


@dataclasses.dataclass
class Predictor:
    """encoded face crops [n] -> outputs dict; `input_size` is the network's input side."""

    answer: Callable
    input_size: int
    face_crop: Optional[faces.CropSpec] = None  # how the model's faces were cut, where recorded
    prior: Optional[dict] = None  # a release's recorded age prior (`release.ModelPath.prior`)

    def __call__(self, encoded: Sequence[bytes]):
        return self.answer(tf.constant(list(encoded), tf.string))


def load_predictor(path: str, crops: Optional[str] = None) -> Predictor:
    """The serving graph of an exported SavedModel folder, or of a .keras model or released
    model's folder with `crops` (None: the release's recorded crops, else ten). A two-network
    release answers through `ensemble.EnsembleServer`."""
    opened = release.open_model_path(path)
    if opened.kind == "saved_model":
        for folder, _, names in os.walk(path):  # TensorFlow would wait on a pipe among its files
            for name in names:
                inputs.check_regular(os.path.join(folder, name))
        loaded = tf.saved_model.load(path)
        signatures = set(loaded.signatures)
        if "serving_default" not in signatures or not signatures & {"predict_preprocessed", "predict_crops"}:
            raise ValueError(f"{path} is a SavedModel without this project's serving signatures "
                             "(serving_default and predict_preprocessed or predict_crops); export it with "
                             "scripts/export.py.")
        serving = loaded.signatures["serving_default"]
        return Predictor(lambda encoded: serving(images=encoded), _checked_input_size(path, loaded), opened.face_crop)
    server = serving_module(opened, crops)
    return Predictor(server.serve_encoded, server.input_size, opened.face_crop, opened.prior)


# What prediction reads of an export's answers, one value (or box) per face, in float32.
ANSWER_SHAPES = {"age": [None], "global_age": [None], "local_age": [None], "box": [None, 4]}


def _checked_input_size(path: str, loaded) -> int:
    """The network's input side of an exported SavedModel whose signatures carry our names, once
    their inputs and outputs are checked to be ours by dtype and shape (a foreign graph under our
    names failed inside TensorFlow, or answered without `local_age`); raises ValueError naming it."""
    def refuse(what: str):
        raise ValueError(f"{path}: {what}; not an export of this project (export it with scripts/export.py).")

    serving = loaded.signatures["serving_default"]
    inputs = serving.structured_input_signature[1]
    images = inputs.get("images")
    if set(inputs) != {"images"} or not isinstance(images, tf.TensorSpec) or images.dtype != tf.string \
            or images.shape.rank != 1:
        refuse(f"serving_default takes {_specs(inputs)} where encoded images (string [n]) are expected")
    outputs = serving.structured_outputs
    for key, shape in ANSWER_SHAPES.items():
        spec = outputs.get(key)
        if not isinstance(spec, tf.TensorSpec) or spec.dtype != tf.float32 or not spec.shape.is_compatible_with(shape):
            refuse(f"serving_default answers {_specs(outputs)}, without {key} float32 {shape}")
    if "predict_crops" in loaded.signatures:
        size = getattr(loaded, "al_input_size", None)
        if size is None or not isinstance(size, tf.Variable) or size.dtype not in (tf.int32, tf.int64) or size.shape.rank:
            refuse("predict_crops comes without its al_input_size")
        value = int(size.numpy())
    else:
        images = loaded.signatures["predict_preprocessed"].structured_input_signature[1].get("images")
        if not isinstance(images, tf.TensorSpec) or images.dtype != tf.float32 or images.shape.rank != 4 \
                or images.shape[1] is None:
            refuse("predict_preprocessed takes no float32 [n, size, size, 3] images")
        value = int(images.shape[1])
    if not 8 <= value <= 4096:
        refuse(f"its input side of {value} px is not one a network of ours has")
    return value


def _specs(specs: dict) -> str:
    """Tensor specs as a person reads them: "images float32 (None, 64, 64, 3)"."""
    return ", ".join(f"{k} {v.dtype.name} {tuple(v.shape.as_list()) if v.shape.rank is not None else '(?)'}"
                     if isinstance(v, tf.TensorSpec) else f"{k} {type(v).__name__}"
                     for k, v in sorted(specs.items()))[:200] or "nothing"


def serving_module(opened: release.ModelPath, crops: Optional[str] = None) -> tf.Module:
    """The serving graph of an opened Keras model or release (`export.AgeServer`, or
    `ensemble.EnsembleServer` for a release with face-api's network)."""
    if opened.kind == "keras":
        inputs.check_regular(opened.path)  # NotRegularFile: Keras would wait on a pipe
    try:
        model = opened.load()
    except (TypeError, ValueError) as error:  # a .keras naming a function or class no one registered
        if opened.kind != "keras":
            raise
        raise ValueError(f"{opened.path}: Keras will not load it ({keras_reason(error)})") from None
    attention.freeze_attention_state(model)
    crops = crops or opened.crops or "ten"
    if not opened.two_networks:
        return export.AgeServer(model, crops)
    description = opened.description
    try:  # every entry read into its type before a network is loaded
        combination = ensemble.Combination.from_json(release.recorded_combination(description))
        table = intervals.IntervalTable.from_json(description["intervals"]) if description.get("intervals") else None
        cut = faceapi_import.FaceApiCut(**description["faceapi"]["cut"])
        faceres = description.get("faceres")
        faceres_cut = faceapi_import.FaceApiCut(**faceres["cut"]) if faceres else None
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"{os.path.join(opened.path, release.CONFIG_FILE)}: its combination, interval table or a "
                         f"member's cut is not one this code reads ({error})") from None
    return ensemble.EnsembleServer(
        model, crops, release.load_faceapi(opened.path, description), cut, combination, table,
        ensemble.Faceres(release.load_faceres(opened.path, description), faceres_cut, faceres["readout"])
        if faceres else None)


def keras_reason(error: Exception) -> str:
    """The innermost reason of a Keras deserialization error, in one sentence (Keras nests each
    layer's failure in its parent's message, config dumps included)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    inner = [line[len("Exception encountered:"):].strip() for line in lines if line.startswith("Exception encountered:")]
    reason = (inner or lines or [type(error).__name__])[-1]
    return reason.split(". ")[0].rstrip(".")[:200]


class CropMismatch(ValueError):
    """A detector asked for whose boxes the model's recorded margin was not measured on."""


def face_crop_for(predict: Predictor, size: Optional[int] = None, margin: Optional[float] = None,
                  detector: Optional[str] = None) -> faces.CropSpec:
    """The crop to cut faces with: flags where given, else the model's recorded crop, else defaults.

    A recorded margin belongs to its detector's box, so another detector needs its own margin (one
    with the same boxes, `faces.same_boxes`, takes it). With no detector given, a recorded dlib crop
    is cut with BlazeFace's faces (`faces.FACE_PATH_DETECTOR`: the same boxes, measured level)."""
    recorded = predict.face_crop or faces.CropSpec()
    if predict.face_crop and detector is not None and not faces.same_boxes(detector, recorded.detector) \
            and margin is None:
        raise CropMismatch(
            f"the model's crop margin {recorded.margin:g} is for {recorded.detector} boxes; give the margin that "
            f"cuts {detector} boxes alike (scripts/measure_crop_margin.py --detector={detector} measures it)."
        )
    if detector is None and predict.face_crop:
        detector = faces.FACE_PATH_DETECTOR.get(recorded.detector, recorded.detector)
    return dataclasses.replace(recorded, size=size if size is not None else recorded.size,
                               margin=margin if margin is not None else recorded.margin,
                               detector=detector or recorded.detector)


def photo_detector(spec: faces.CropSpec, fallback: str = "mtcnn"):
    """The detector `predict.py` uses: the crop's own, and where it finds no face, `fallback`
    (its box rescaled to the crop detector's; "" or the same name for none)."""
    detector = face_detectors.make_detector(spec.detector)
    if fallback and fallback != spec.detector:
        detector = faces.FallbackDetector(detector, face_detectors.make_detector(fallback))
    return detector


def find_faces(photo: np.ndarray, detector, min_confidence: Optional[float] = None) -> List[faces.Face]:
    """Every confident upright face; if there is none, the strongest face of the rotation search
    (`min_confidence` None: the detector's own default). The search runs on the photo's bounded
    `faces.detection_copy` (raises faces.NarrowPhoto for a photo too thin to hold a face)."""
    min_confidence = faces.default_confidence(detector, min_confidence)
    copy, scale = faces.detection_copy(photo)
    upright = [f for f in faces.detect_at(copy, detector, faces.UPRIGHT) if f.confidence >= min_confidence]
    if upright:
        return sorted((faces.to_full_photo(f, scale) for f in upright), key=lambda f: f.center[0])
    best, _ = faces.find_face(copy, detector, min_confidence)
    return [faces.to_full_photo(best, scale)] if best is not None else []


def attention_corners(face: faces.Face, spec: faces.CropSpec, box, input_size: int) -> np.ndarray:
    """The model's (x, y, w, h) box, fractions of the centre crop, as photo-pixel corners."""
    resized = augment.eval_resize_size(input_size)
    offset = (resized - input_size) / 2.0
    x, y, w, h = [float(v) for v in box]
    uv = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])
    uv = (offset + uv * input_size) / resized  # fractions of the whole face crop
    return faces.crop_to_photo(face, spec, uv)


@dataclasses.dataclass
class PhotoFaces:
    """A photo after decoding, detection and cropping: what the network still has to answer."""

    path: str
    found: List[faces.Face]
    crops: List[bytes]  # JPEG face crops, as stored in the TFRecords
    error: Optional[str] = None
    note: Optional[str] = None  # what was left out of an answered photo (`MAX_FACES`)


# Faces answered in one photo: the most confident this many (a crowd fits; a mosaic of 1,024 faces
# would otherwise hold them all in memory and in the network's batch at once).
MAX_FACES = 256


class SearchStopped(Exception):
    """Raised in place of a detector call once the run has been told to stop (`predict_photos`)."""


class _Stoppable:
    """`detector`, refusing further calls once `stop` is set: a photo's search (up to 28 detector
    calls, each bounded by `faces.detection_copy`) ends at the next call instead of at its end."""

    def __init__(self, detector, stop):
        self._detector, self._stop = detector, stop

    def __getattr__(self, name):
        return getattr(self._detector, name)

    def detect(self, image):
        if self._stop.is_set():
            raise SearchStopped()
        return self._detector.detect(image)


# How a photo is decoded for its faces: "scaled", a large JPEG at the DCT reduction its detection
# copy needs (`images.ScaledPhoto`), each crop from the reduced pixels where its box still spans the
# crop's side there, else from the full photo; "full", the whole photo decoded first (before #36).
DECODES = ("scaled", "full")


def locate_faces(path, detector, spec: faces.CropSpec, min_confidence: Optional[float] = None,
                 no_face: str = "skip", decode: str = "scaled") -> PhotoFaces:
    """Decode, detect and cut one photo (everything before the network); never raises.

    A photo where no face is found is reported (`no_face="skip"`), or answered as one face
    filling its centre square (`"whole"`, method "center"): ready-made face chips, which a
    detector often misses because the face fills the picture, cut as the build cuts them.
    Faces are found and reported in the full photo's pixels whatever `decode` (`DECODES`)."""
    if no_face not in NO_FACE:
        raise ValueError(f"no_face must be one of {NO_FACE}; received {no_face!r}.")
    if decode not in DECODES:
        raise ValueError(f"decode must be one of {DECODES}; received {decode!r}.")
    try:
        photo = images.ScaledPhoto(path, faces.detection_side(detector) if decode == "scaled" else 1 << 30)
    except images.ImageError as error:
        return PhotoFaces(str(path), [], [], error.reason)
    try:
        found = [faces.to_full_photo(f, 1.0 / photo.factor) for f in find_faces(photo.pixels, detector, min_confidence)]
    except faces.NarrowPhoto as error:
        return PhotoFaces(str(path), [], [], str(error))
    note = None
    if len(found) > MAX_FACES:
        note = f"{len(found)} faces found; the {MAX_FACES} most confident answered"
        kept = sorted(found, key=lambda f: -f.confidence)[:MAX_FACES]
        found = sorted(kept, key=lambda f: f.center[0])
    if not found and no_face == "whole":
        found = [faces.center_face(photo.shape, spec)]
    if not found:
        return PhotoFaces(str(path), [], [], "no face found")
    return PhotoFaces(str(path), found, [faces.encode_jpeg(cut_face(photo, f, spec)) for f in found], note=note)


def cut_face(photo: images.ScaledPhoto, face: faces.Face, spec: faces.CropSpec) -> np.ndarray:
    """`faces.crop_face` of a face given in full-photo pixels, from the most reduced decode of the
    photo (the one detection used, else the largest DCT reduction) in which its crop box still
    spans at least the crop's side: the crop shrinks it by area either way."""
    box = max(faces.crop_box_size(face, spec))
    factor = 1
    if photo.factor > 1:
        factor = next((f for f in sorted({photo.factor, *images.DCT_FACTORS}, reverse=True)
                       if f <= photo.factor and box >= spec.size * f), 1)
    if factor == 1:
        return faces.crop_face(photo.full(), face, spec)
    return faces.crop_face(photo.at(factor), faces.to_full_photo(face, factor), spec)


def predict_photo(path, predict, detector, spec: faces.CropSpec, input_size: int,
                  min_confidence: Optional[float] = None, no_face: str = "skip", decode: str = "scaled") -> PhotoResult:
    """Ages of every face of one photo; a bad photo gives a result with `error`, never raises."""
    return next(_answer_batch([locate_faces(path, detector, spec, min_confidence, no_face, decode)], predict, spec,
                              input_size, 32))


def predict_photos(paths: Sequence[str], predict, detector, spec: faces.CropSpec, input_size: int,
                   min_confidence: Optional[float] = None, batch_faces: int = 32,
                   prefetch: int = 64, full_batches: bool = False, no_face: str = "skip",
                   decode: str = "scaled") -> Iterator[PhotoResult]:
    """Ages of every face of many photos, in order: decoding, detection and cropping run in a
    worker thread while the network (which releases the GIL) answers the faces of earlier
    photos, up to `batch_faces` in one call: whatever is ready when the network is free, or
    only full batches with `full_batches`. Same answers as `predict_photo`."""
    import concurrent.futures
    import queue
    import threading

    located: "queue.Queue" = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    stoppable = _Stoppable(detector, stop)

    def produce():
        try:
            for path in paths:
                if stop.is_set():
                    return
                located.put(locate_faces(path, stoppable, spec, min_confidence, no_face, decode))
        except SearchStopped:
            return
        finally:
            located.put(None)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        producer = pool.submit(produce)
        try:
            pending: List[PhotoFaces] = []
            done = False
            while not done:
                item = located.get()
                done = item is None
                if item is not None:
                    pending.append(item)
                waiting = sum(len(p.crops) for p in pending)
                if pending and (done or waiting >= batch_faces or (located.empty() and not full_batches)):
                    yield from _answer_batch(pending, predict, spec, input_size, batch_faces)
                    pending = []
            producer.result()  # re-raises an unexpected error of the worker
        finally:
            stop.set()  # a SIGTERM or a caller that stops early: the worker ends at its next detector call
            while producer.running():  # unblock a worker waiting on a full queue
                try:
                    located.get(timeout=0.05)
                except queue.Empty:
                    pass


def _answer_batch(batch: Sequence[PhotoFaces], predict, spec, input_size, batch_faces: int) -> Iterator[PhotoResult]:
    """The photos' results, their faces answered `batch_faces` at a time: memory is bounded by the
    batch, not by a photo's faces."""
    crops = [crop for item in batch for crop in item.crops]
    parts = [{k: np.asarray(v) for k, v in predict(crops[i : i + batch_faces]).items()}
             for i in range(0, len(crops), batch_faces)]
    outputs = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]} if parts else {}
    start = 0
    for item in batch:
        if item.error:
            yield PhotoResult(item.path, [], item.error)
            continue
        end = start + len(item.crops)
        yield answer_faces(item, {k: v[start:end] for k, v in outputs.items()}, spec, input_size)
        start = end


# The answers a face is refused on where one of them is not a finite number (`local_age` is nan
# by design where no attention stage trained the local head).
FINITE_ANSWERS = ("age", "age_std", "global_age", "age_low", "age_high", "faceapi_age", "faceres_age")


def non_finite(outputs: dict, i: int) -> Optional[str]:
    """Why face `i`'s answer is refused ("the model answered age inf"), or None for a finite one."""
    for key in FINITE_ANSWERS:
        if key in outputs and not np.isfinite(float(outputs[key][i])):
            return f"the model answered {key} {float(outputs[key][i])}"
    return None


def answer_faces(located: PhotoFaces, outputs: dict, spec: faces.CropSpec, input_size: int) -> PhotoResult:
    """A photo's result from the network's outputs for its faces (in `located.found` order); a
    face answered with inf or nan years is refused (`FaceAge.error`), never reported as an age."""
    path, found = located.path, located.found
    results = []
    for i, face in enumerate(found):
        refused = non_finite(outputs, i)
        if refused:
            results.append(FaceAge(face=i, age=None, age_std=None, global_age=None, local_age=None,
                                   confidence=round(face.confidence, 4), method=face.method,
                                   corners=np.round(face.corners(), 1).tolist(), attention=None, error=refused))
            continue
        local_trained = bool(np.isfinite(outputs["local_age"][i]))
        results.append(FaceAge(
            face=i,
            age=float(outputs["age"][i]),
            age_std=float(outputs["age_std"][i]) if "age_std" in outputs else None,
            global_age=float(outputs["global_age"][i]),
            local_age=float(outputs["local_age"][i]) if local_trained else None,
            confidence=round(face.confidence, 4),
            method=face.method,
            corners=np.round(face.corners(), 1).tolist(),
            attention=np.round(attention_corners(face, spec, outputs["box"][i], input_size), 1).tolist()
            if local_trained else None,
            **{key: float(outputs[key][i]) for key in ("age_low", "age_high", "faceapi_age", "faceres_age")
               if key in outputs},
        ))
    return PhotoResult(path, results, probs=np.asarray(outputs["probs"]) if "probs" in outputs else None,
                       note=located.note)


def adapt_to_population(results: Sequence[PhotoResult], prior: dict) -> List[PhotoResult]:
    """The photos' answers moved to their own faces' age prior (`prior_shift.adapt`, from the
    model's recorded training prior `prior`: `release.recorded_prior`): for many photos of one
    population whose ages differ from the training faces'. `age` and `age_std` change; the heads'
    own ages stay as they were."""

    answered = [r for r in results if any(f.error is None for f in r.faces)]
    if any(r.probs is None for r in answered):
        raise ValueError("these answers carry no class probabilities (an export without 'probs'?).")
    if not answered:
        return list(results)
    # refused faces (a non-finite answer) take no part: their rows are left out of the estimate
    stacked = np.concatenate([r.probs[[f.error is None for f in r.faces]] for r in answered])
    adapted, _ = prior_shift.adapt(stacked, np.asarray(prior["source"]), prior["smoothing"])
    ages = np.asarray(prior["class_ages"], np.float64)
    mean = adapted @ ages
    spread = np.sqrt(np.maximum(adapted @ ages ** 2 - mean ** 2, 0.0))
    moved, start = [], 0
    for result in results:
        if not any(f.error is None for f in result.faces):
            moved.append(result)
            continue
        faces_, rows = [], []
        for face in result.faces:
            if face.error is not None:
                faces_.append(face)
                continue
            faces_.append(dataclasses.replace(face, age=float(mean[start]), age_std=float(spread[start]),
                                              prior_faces=len(stacked)))
            rows.append(start)
            start += 1
        moved.append(dataclasses.replace(result, faces=faces_, probs=adapted[rows]))
    return moved


def _age_text(face: FaceAge) -> str:
    if face.age_low is not None:
        return f"{face.age:.1f} ({face.age_low:.0f}-{face.age_high:.0f})"
    return f"{face.age:.1f}" if face.age_std is None else f"{face.age:.1f} +-{face.age_std:.1f}"


def draw(photo: np.ndarray, result: PhotoResult) -> np.ndarray:
    """The photo (RGB) with each face box, its age, and the attention box drawn."""
    canvas = cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)
    scale = max(1, int(round(max(photo.shape[:2]) / 500)))
    for face in (f for f in result.faces if f.error is None):
        cv2.polylines(canvas, [np.int32(face.corners)], True, (0, 200, 0), 2 * scale)
        if face.attention is not None:
            cv2.polylines(canvas, [np.int32(face.attention)], True, (0, 0, 255), scale)
        x, y = np.min(np.array(face.corners), axis=0)
        cv2.putText(canvas, _age_text(face), (int(x), max(12 * scale, int(y) - 4 * scale)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 200, 0), 2 * scale)
    return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)


def drawing_name(path: str, taken: set, extension: str = ".jpg", free: Callable[[str], bool] = lambda name: True) -> str:
    """A name for the drawn copy of `path` that no other output of the run has taken (nor an input
    that lives in the drawings' folder, when `taken` holds those too) and that `free` accepts (a
    name held by a file this run may not replace is not): `face.jpg`, then `face.png.jpg` for
    face.png, then `face-2.jpg`, ... (`taken` is updated)."""
    stem, own = os.path.splitext(os.path.basename(path))
    candidates = [stem + extension, f"{stem}{own}{extension}"]
    i = 2
    while True:
        for name in candidates:
            if name not in taken and free(name):
                taken.add(name)
                return name
        candidates = [f"{stem}-{i}{extension}"]
        i += 1


# A drawn photo carries this JPEG comment, so that a later run may replace a drawing of ours and
# never a photo of the user's that only has a drawing's name.
DRAWING_MARK = b"keras-alage drawing"
_COMMENT = b"\xff\xfe" + struct.pack(">H", len(DRAWING_MARK) + 2) + DRAWING_MARK


def is_drawing(path: str) -> bool:
    """True for a regular file that a `write_drawing` wrote (its comment says so); a symbolic link,
    a device, a pipe or any other file is not."""
    if not files.is_regular(path):
        return False
    try:
        handle = files.open_regular(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        head = os.read(handle, 256)
    finally:
        os.close(handle)
    return head.startswith(b"\xff\xd8") and _COMMENT in head


def inputs_in(folder: str, paths: Sequence[str]) -> set:
    """The names of those `paths` that are files of `folder`: a drawing must never take one."""
    here = os.path.realpath(folder)
    return {os.path.basename(p) for p in paths if os.path.realpath(os.path.dirname(os.path.abspath(p))) == here}


def write_drawing(path: str, drawn: np.ndarray) -> None:
    """The drawn photo as JPEG (0644, marked as a drawing of ours: `is_drawing`), atomically;
    raises OSError naming `path` when it cannot be written whole."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: the drawing could not be encoded.")
    data = encoded.tobytes()
    at = 2  # after SOI, and after the JFIF segment where there is one (it comes first)
    if data[2:4] == b"\xff\xe0":
        at = 4 + struct.unpack(">H", data[4:6])[0]
    files.write_atomically(path, data[:at] + _COMMENT + data[at:])


def image_paths(inputs: Sequence[str]) -> List[str]:
    """Files as given, and the files of given folders (sorted); missing ones stay, to be reported."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            paths += sorted(os.path.join(item, n) for n in os.listdir(item) if not n.startswith("."))
        else:
            paths.append(item)
    return paths


CSV_COLUMNS = ("path", "face", "age", "age_low", "age_high", "age_std", "global_age", "local_age", "faceapi_age",
               "faceres_age", "confidence", "method", "box", "error", "prior_faces")


def spreadsheet_safe(cell) -> str:
    """A CSV cell a spreadsheet shows as text: one starting with =, +, -, @ (from a file name) gets a
    leading apostrophe, so it is never run as a formula; numbers are written as they are."""
    text = str(cell)
    if isinstance(cell, (int, float)) or not text or text[0] not in "=+-@\t\r":
        return text
    return "'" + text


def csv_rows(result: PhotoResult) -> List[list]:
    """One row per face (a refused face: its reason, no ages), or one for a photo that failed."""
    if result.error:
        return [[result.path] + [""] * (CSV_COLUMNS.index("error") - 1) + [result.error, ""]]

    def years(value):
        return "" if value is None else f"{value:.2f}"

    return [[result.path, face.face, years(face.age), years(face.age_low), years(face.age_high), years(face.age_std),
             years(face.global_age), years(face.local_age), years(face.faceapi_age), years(face.faceres_age),
             face.confidence,
             face.method, json.dumps(face.corners), face.error or "", "" if face.prior_faces is None else face.prior_faces]
            for face in result.faces]


def csv_text(rows: Sequence[list]) -> str:
    """Rows as the table holds them: spreadsheet-safe cells, CSV's CRLF endings."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow([spreadsheet_safe(cell) for cell in row])
    return buffer.getvalue()


CSV_HEADER = csv_text([CSV_COLUMNS]).encode("utf-8")


class ResultsWriter:
    """Writes results as they come: each photo's CSV rows are appended to `<path>.partial` in one
    write, which becomes `path` when the run closes the writer; an interrupted run leaves what it
    answered in the .partial file. JSON (by extension) is written whole, atomically, at close.

    One writer per table: the writer holds `path` (`files.place_lock`) from its start to `close`
    or `release`, so a second run on the same table stops at once (`files.FolderBusy`). The .partial
    is opened without following a symbolic link and must be a regular file (never written through).

    A .partial left by an interrupted run is resumed: with `inputs` (this run's photos, in order),
    the photos it answered are kept and `answered` marks them among `inputs`; the last photo it
    holds is dropped and answered again (a kill or a full disk may have torn its rows); `drawn`
    marks the kept photos that had a face answered (and so a drawing). A .partial that answers
    photos this run was not given, or that is not a table of ours, is refused (FileExistsError)
    before anything is written; `resume=False` starts over (`started_over`).
    """

    def __init__(self, path: str, inputs: Optional[Sequence[str]] = None, resume: bool = True):
        self.path, self.results = path, []
        self.partial = None if path.endswith(".json") else path + ".partial"
        self.answered = [False] * len(inputs or ())
        self.drawn = [False] * len(inputs or ())
        self.kept, self.started_over, self.handle = 0, False, None
        files.check_replaceable(path, f"--output={path}")
        if self.partial:
            files.check_replaceable(self.partial, f"--output={path}: {self.partial}")
        self._hold = files.place_lock(path, "writing answers", other="another --output")
        self._hold.__enter__()
        try:
            if self.partial:
                self._open(inputs, resume)
        except BaseException:
            self.release()
            raise

    def _open(self, inputs: Optional[Sequence[str]], resume: bool) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.handle = files.open_regular(self.partial, os.O_RDWR | os.O_CREAT)
        left = _read_all(self.handle)
        keep = len(CSV_HEADER)
        if left:
            if not left.startswith(CSV_HEADER):
                raise FileExistsError(f"--output={self.path}: {self.partial} is not a table this command writes; "
                                      "refused (delete it or name another --output).")
            groups = _complete_photos(left, len(CSV_HEADER))[:-1]  # the last may be torn: answered again
            waiting: Dict[str, collections.deque] = collections.defaultdict(collections.deque)
            for cell, _, answered in groups:
                waiting[cell].append(answered)
            for i, path in enumerate(inputs or ()):
                cell = spreadsheet_safe(path)
                if waiting.get(cell):
                    self.drawn[i] = waiting[cell].popleft()
                    self.answered[i] = True
            other = sorted(cell for cell, left_over in waiting.items() if left_over)
            if other:
                raise FileExistsError(
                    f"--output={self.path}: {self.partial}, left by an interrupted run, answers photos this run "
                    f"was not given (e.g. {other[0]}); rerun that command to finish it, or delete it to start over.")
            if resume:
                self.kept = len(groups)
                keep = groups[-1][1] if groups else keep
            else:
                self.answered = self.drawn = [False] * len(self.answered)
                self.started_over = bool(groups)
        os.ftruncate(self.handle, keep if left else 0)
        self.offset = keep if left else 0
        if not left:
            self._write(CSV_HEADER)

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.pwrite(self.handle, view, self.offset + len(data) - len(view)):]
        except OSError as error:
            os.ftruncate(self.handle, self.offset)  # never a torn row: the table ends at its last whole photo
            raise files.named(error, self.partial) from None
        self.offset += len(data)

    def add(self, result: PhotoResult) -> None:
        if not self.partial:
            self.results.append(result)
            return
        self._write(csv_text(csv_rows(result)).encode("utf-8"))

    def close(self) -> None:
        try:
            if not self.partial:
                rows = [{k: v for k, v in dataclasses.asdict(r).items() if k != "probs" and (k != "note" or v)}
                        for r in self.results]  # a note only where a photo has one: the rows keep their keys
                files.write_atomically(self.path, json.dumps(rows, indent=1))
                return
            os.fchmod(self.handle, 0o644)
            files.check_replaceable(self.path, f"--output={self.path}")
            os.replace(self.partial, self.path)
        finally:
            self.release()

    def release(self) -> None:
        """Lets go of the table (an interrupted run: the .partial stays for the rerun to resume)."""
        if self.handle is not None:
            os.close(self.handle)
            self.handle = None
        if self._hold is not None:
            self._hold.__exit__(None, None, None)
            self._hold = None


def _read_all(handle: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(handle, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _complete_photos(data: bytes, start: int) -> List[tuple]:
    """(path cell, end offset, a face answered) of each photo whose rows are whole in `data` after
    `start`, in order.
    A photo starts at a row for face 0 or at a failed photo's row (no face); a row that is not
    whole (no line end, cells missing, not UTF-8) ends the list."""
    photos_, offset = [], start
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as error:
        text = data[start:start + error.start].decode("utf-8")
    rows = csv.reader(io.StringIO(text, newline=""))
    while True:
        try:
            row = next(rows)
        except (StopIteration, csv.Error):  # the end, or a row torn inside a quoted cell
            break
        written = _row_text(row)
        if len(row) != len(CSV_COLUMNS) or data[offset:offset + len(written)] != written:
            break
        offset += len(written)
        face, error = row[CSV_COLUMNS.index("face")], row[CSV_COLUMNS.index("error")]
        answered = face != "" and not error
        if face in ("", "0"):
            photos_.append([row[0], offset, answered])
        elif photos_ and face.isdigit():
            photos_[-1][1:] = [offset, photos_[-1][2] or answered]
        else:
            break
    return [tuple(p) for p in photos_]


def _row_text(row: Sequence[str]) -> bytes:
    """A row read back, as the writer wrote it (its cells are already spreadsheet-safe)."""
    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerow(row)
    return buffer.getvalue().encode("utf-8")


def write_results(results: Sequence[PhotoResult], path: str) -> None:
    """CSV (one row per face, or per failed photo) or JSON, by the file's extension."""
    writer = ResultsWriter(path, resume=False)
    for result in results:
        writer.add(result)
    writer.close()


def describe(result: PhotoResult) -> str:
    if result.error:
        return f"{result.path}: skipped ({result.error})"
    whole = " (no face found: the whole photo)"
    ages = ", ".join(f"face {f.face}: refused ({f.error})" if f.error else
                     f"face {f.face}: {_age_text(f)} years{whole if f.method == 'center' else ''}"
                     for f in result.faces)
    return f"{result.path}: {ages}" + (f" ({result.note})" if result.note else "")
