"""Ages of the faces in ordinary photos: detect, crop as in training, predict, report, draw.

Faces are cut with the same `pipelines.faces.CropSpec` as the TFRecord build and encoded as
JPEG like the stored crops, then answered by the same graph as the exported SavedModel
(`export.AgeServer`), so a photo gets the answer TF Serving would give for its crops.
"""

import csv
import dataclasses
import json
import os
from typing import Callable, Iterator, List, Optional, Sequence

import cv2
import numpy as np
import tensorflow as tf

from keras_alage.evaluation import intervals
from keras_alage.models import attention, faceapi_import, release
from keras_alage.serving import ensemble, export, prior_shift
from pipelines import augment, faces, files, images


@dataclasses.dataclass
class FaceAge:
    """One face of a photo and its predicted ages.

    `corners` are the face box's corners in photo pixels; `attention` the attention box's
    corners in photo pixels. `local_age` and `attention` are None for a model whose local
    head no attention stage trained (it answers with its global head).
    """

    face: int
    age: float
    age_std: Optional[float]  # spread of the predicted age distribution; None from older exports
    global_age: float
    local_age: Optional[float]
    confidence: float
    method: str
    corners: List[List[float]]
    attention: Optional[List[List[float]]]
    prior_faces: Optional[int] = None  # answered under the age prior of this many faces (`adapt_to_population`)
    age_low: Optional[float] = None  # the release's calibrated interval (`evaluation.intervals`), where it has one
    age_high: Optional[float] = None
    faceapi_age: Optional[float] = None  # face-api's own answer, in a two-network release


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
    faceapi_net = release.load_faceapi(opened.path, opened.description)
    member = opened.description["faceapi"]
    table = opened.description.get("intervals")
    faceres = opened.description.get("faceres")
    return ensemble.EnsembleServer(
        model, crops, faceapi_net, faceapi_import.FaceApiCut(**member["cut"]),
        ensemble.Combination.from_json(release.recorded_combination(opened.description)),
        intervals.IntervalTable.from_json(table) if table else None,
        ensemble.Faceres(release.load_faceres(opened.path, opened.description),
                         faceapi_import.FaceApiCut(**faceres["cut"]), faceres["readout"]) if faceres else None)


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

    A recorded margin belongs to its detector's box, so another detector needs its own margin."""
    recorded = predict.face_crop or faces.CropSpec()
    if predict.face_crop and detector not in (None, recorded.detector) and margin is None:
        raise CropMismatch(
            f"the model's crop margin {recorded.margin:g} is for {recorded.detector} boxes; give the margin that "
            f"cuts {detector} boxes alike (scripts/measure_crop_margin.py --detector={detector} measures it)."
        )
    return dataclasses.replace(recorded, size=size if size is not None else recorded.size,
                               margin=margin if margin is not None else recorded.margin,
                               detector=detector or recorded.detector)


def photo_detector(spec: faces.CropSpec, fallback: str = "mtcnn"):
    """The detector `predict.py` uses: the crop's own, and where it finds no face, `fallback`
    (its box rescaled to the crop detector's; "" or the same name for none)."""
    detector = faces.make_detector(spec.detector)
    if fallback and fallback != spec.detector:
        detector = faces.FallbackDetector(detector, faces.make_detector(fallback))
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


NO_FACE = ("skip", "whole")
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


def locate_faces(path, detector, spec: faces.CropSpec, min_confidence: Optional[float] = None,
                 no_face: str = "skip") -> PhotoFaces:
    """Decode, detect and cut one photo (everything before the network); never raises.

    A photo where no face is found is reported (`no_face="skip"`), or answered as one face
    filling its centre square (`"whole"`, method "center"): ready-made face chips, which a
    detector often misses because the face fills the picture, cut as the build cuts them."""
    if no_face not in NO_FACE:
        raise ValueError(f"no_face must be one of {NO_FACE}; received {no_face!r}.")
    try:
        _, photo = images.read_photo(path)
    except images.ImageError as error:
        return PhotoFaces(str(path), [], [], error.reason)
    try:
        found = find_faces(photo, detector, min_confidence)
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
    return PhotoFaces(str(path), found, [faces.encode_jpeg(faces.crop_face(photo, f, spec)) for f in found], note=note)


def predict_photo(path, predict, detector, spec: faces.CropSpec, input_size: int,
                  min_confidence: Optional[float] = None, no_face: str = "skip") -> PhotoResult:
    """Ages of every face of one photo; a bad photo gives a result with `error`, never raises."""
    return next(_answer_batch([locate_faces(path, detector, spec, min_confidence, no_face)], predict, spec,
                              input_size, 32))


def predict_photos(paths: Sequence[str], predict, detector, spec: faces.CropSpec, input_size: int,
                   min_confidence: Optional[float] = None, batch_faces: int = 32,
                   prefetch: int = 64, full_batches: bool = False, no_face: str = "skip") -> Iterator[PhotoResult]:
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
                located.put(locate_faces(path, stoppable, spec, min_confidence, no_face))
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


def answer_faces(located: PhotoFaces, outputs: dict, spec: faces.CropSpec, input_size: int) -> PhotoResult:
    """A photo's result from the network's outputs for its faces (in `located.found` order)."""
    path, found = located.path, located.found
    results = []
    for i, face in enumerate(found):
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
            **{key: float(outputs[key][i]) for key in ("age_low", "age_high", "faceapi_age") if key in outputs},
        ))
    return PhotoResult(path, results, probs=np.asarray(outputs["probs"]) if "probs" in outputs else None,
                       note=located.note)


def adapt_to_population(results: Sequence[PhotoResult], prior: dict) -> List[PhotoResult]:
    """The photos' answers moved to their own faces' age prior (`prior_shift.adapt`, from the
    model's recorded training prior `prior`: `release.recorded_prior`): for many photos of one
    population whose ages differ from the training faces'. `age` and `age_std` change; the heads'
    own ages stay as they were."""

    answered = [r for r in results if r.faces]
    if any(r.probs is None for r in answered):
        raise ValueError("these answers carry no class probabilities (an export without 'probs'?).")
    if not answered:
        return list(results)
    stacked = np.concatenate([r.probs for r in answered])
    adapted, _ = prior_shift.adapt(stacked, np.asarray(prior["source"]), prior["smoothing"])
    ages = np.asarray(prior["class_ages"], np.float64)
    mean = adapted @ ages
    spread = np.sqrt(np.maximum(adapted @ ages ** 2 - mean ** 2, 0.0))
    moved, start = [], 0
    for result in results:
        if not result.faces:
            moved.append(result)
            continue
        end = start + len(result.faces)
        faces_ = [dataclasses.replace(face, age=float(mean[i]), age_std=float(spread[i]), prior_faces=len(stacked))
                  for face, i in zip(result.faces, range(start, end))]
        moved.append(dataclasses.replace(result, faces=faces_, probs=adapted[start:end]))
        start = end
    return moved


def _age_text(face: FaceAge) -> str:
    if face.age_low is not None:
        return f"{face.age:.1f} ({face.age_low:.0f}-{face.age_high:.0f})"
    return f"{face.age:.1f}" if face.age_std is None else f"{face.age:.1f} +-{face.age_std:.1f}"


def draw(photo: np.ndarray, result: PhotoResult) -> np.ndarray:
    """The photo (RGB) with each face box, its age, and the attention box drawn."""
    canvas = cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)
    scale = max(1, int(round(max(photo.shape[:2]) / 500)))
    for face in result.faces:
        cv2.polylines(canvas, [np.int32(face.corners)], True, (0, 200, 0), 2 * scale)
        if face.attention is not None:
            cv2.polylines(canvas, [np.int32(face.attention)], True, (0, 0, 255), scale)
        x, y = np.min(np.array(face.corners), axis=0)
        cv2.putText(canvas, _age_text(face), (int(x), max(12 * scale, int(y) - 4 * scale)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 200, 0), 2 * scale)
    return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)


def drawing_name(path: str, taken: set, extension: str = ".jpg") -> str:
    """A name for the drawn copy of `path` that no other output of the run has taken (nor an input
    that lives in the drawings' folder, when `taken` holds those too): `face.jpg`, then
    `face.png.jpg` for face.png, then `face-2.jpg`, ... (`taken` is updated)."""
    stem, own = os.path.splitext(os.path.basename(path))
    candidates = [stem + extension, f"{stem}{own}{extension}"] + [
        f"{stem}-{i}{extension}" for i in range(2, len(taken) + 3)]
    name = next(c for c in candidates if c not in taken)
    taken.add(name)
    return name


def inputs_in(folder: str, paths: Sequence[str]) -> set:
    """The names of those `paths` that are files of `folder`: a drawing must never take one."""
    here = os.path.realpath(folder)
    return {os.path.basename(p) for p in paths if os.path.realpath(os.path.dirname(os.path.abspath(p))) == here}


def write_drawing(path: str, drawn: np.ndarray) -> None:
    """The drawn photo as JPEG, atomically; raises OSError when it cannot be written whole."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: the drawing could not be encoded.")
    files.write_atomically(path, encoded.tobytes())


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
               "confidence", "method", "box", "error", "prior_faces")


def spreadsheet_safe(cell) -> str:
    """A CSV cell a spreadsheet shows as text: one starting with =, +, -, @ (from a file name) gets a
    leading apostrophe, so it is never run as a formula; numbers are written as they are."""
    text = str(cell)
    if isinstance(cell, (int, float)) or not text or text[0] not in "=+-@\t\r":
        return text
    return "'" + text


def csv_rows(result: PhotoResult) -> List[list]:
    """One row per face, or one for a photo that failed."""
    if result.error:
        return [[result.path] + [""] * (CSV_COLUMNS.index("error") - 1) + [result.error, ""]]

    def years(value):
        return "" if value is None else f"{value:.2f}"

    return [[result.path, face.face, years(face.age), years(face.age_low), years(face.age_high), years(face.age_std),
             years(face.global_age), years(face.local_age), years(face.faceapi_age), face.confidence,
             face.method, json.dumps(face.corners), "", "" if face.prior_faces is None else face.prior_faces]
            for face in result.faces]


class ResultsWriter:
    """Writes results as they come: CSV rows are appended and flushed to `<path>.partial`, which
    becomes `path` when the run closes the writer; an interrupted run leaves what it answered in
    the .partial file. JSON (by extension) is written whole, atomically, at close."""

    def __init__(self, path: str):
        self.path, self.results = path, []
        self.partial = None if path.endswith(".json") else path + ".partial"
        if self.partial:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self.stream = open(self.partial, "w", newline="", encoding="utf-8")
            self.writer = csv.writer(self.stream)
            self.writer.writerow(CSV_COLUMNS)

    def add(self, result: PhotoResult) -> None:
        if not self.partial:
            self.results.append(result)
            return
        for row in csv_rows(result):
            self.writer.writerow([spreadsheet_safe(cell) for cell in row])
        self.stream.flush()

    def close(self) -> None:
        if not self.partial:
            rows = [{k: v for k, v in dataclasses.asdict(r).items() if k != "probs"} for r in self.results]
            files.write_atomically(self.path, json.dumps(rows, indent=1))
            return
        self.stream.close()
        os.chmod(self.partial, 0o644)
        os.replace(self.partial, self.path)


def write_results(results: Sequence[PhotoResult], path: str) -> None:
    """CSV (one row per face, or per failed photo) or JSON, by the file's extension."""
    writer = ResultsWriter(path)
    for result in results:
        writer.add(result)
    writer.close()


def describe(result: PhotoResult) -> str:
    if result.error:
        return f"{result.path}: skipped ({result.error})"
    whole = " (no face found: the whole photo)"
    ages = ", ".join(f"face {f.face}: {_age_text(f)} years{whole if f.method == 'center' else ''}"
                     for f in result.faces)
    return f"{result.path}: {ages}" + (f" ({result.note})" if result.note else "")
