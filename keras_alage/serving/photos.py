"""Ages of the faces in ordinary photos: find them, crop them as in training, answer them. A model's
face path and its options travel as one `Answerer`; what the answers become (lines, drawings,
tables) is `outputs`' job.

Faces are cut with the same `alage_pipelines.faces.CropSpec` as the TFRecord build and encoded as
JPEG like the stored crops, then answered by the same graph as the exported SavedModel
(`export.AgeServer`), so a photo gets the answer TF Serving would give for its crops.
"""

import collections
import concurrent.futures
import contextlib
import dataclasses
import os
import queue
import threading
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from keras_alage.evaluation import intervals
from keras_alage.models import attention, faceapi_import, release
from keras_alage.serving import ensemble, export, face_detectors, prior_shift
from keras_alage.serving.options import LOCATE_WORKERS, NO_FACE
from alage_pipelines import augment, faces, images, inputs


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
    """Raised in place of a detector call once the run has been told to stop (`answer_photos`)."""


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


@dataclasses.dataclass(frozen=True)
class Answerer:
    """A model's face path with its options, passed whole: the loaded network (`predictor`:
    encoded face crops [n] -> outputs dict), the detector that finds the faces, the crop they are cut
    with, the least detector confidence (None: the detector's own), what a photo with no face
    gets (`NO_FACE`), how many faces one network call answers, and how many photos are located at
    once where the detector allows it (`answer_photos`). `input_size` is the network's input side
    (None: the predictor's own `input_size`)."""

    predictor: Callable
    detector: object
    spec: faces.CropSpec
    min_confidence: Optional[float] = None
    no_face: str = "skip"
    batch_faces: int = 32
    input_size: Optional[int] = None
    locate_workers: int = LOCATE_WORKERS

    def __post_init__(self):
        if self.no_face not in NO_FACE:
            raise ValueError(f"no_face must be one of {NO_FACE}; received {self.no_face!r}.")
        if self.batch_faces < 1:
            raise ValueError(f"batch_faces must be at least 1; received {self.batch_faces}.")
        if self.locate_workers < 1:
            raise ValueError(f"locate_workers must be at least 1; received {self.locate_workers}.")
        if self.input_size is None:
            object.__setattr__(self, "input_size", getattr(self.predictor, "input_size", None))


def answer_photo(path, answerer: Answerer, decode: str = "scaled") -> PhotoResult:
    """Ages of every face of one photo; a bad photo gives a result with `error`, never raises."""
    located = locate_faces(path, answerer.detector, answerer.spec, answerer.min_confidence, answerer.no_face, decode)
    return _photo_result(*next(answer_together([located], answerer)), answerer)


def answer_photos(paths: Sequence[str], answerer: Answerer, prefetch: int = 64, full_batches: bool = False,
                  decode: str = "scaled") -> Iterator[PhotoResult]:
    """Ages of every face of many photos, in order: decoding, detection and cropping run in a
    worker thread while the network answers the faces of earlier photos (`answer_located`), up to
    `answerer.batch_faces` in one call; with a detector that may be called from several threads
    (`concurrent`), `answerer.locate_workers` photos are located at once. Same answers as
    `answer_photo`."""

    def located(stop):
        stoppable = _Stoppable(answerer.detector, stop)  # a photo's search ends at its next detector call
        workers = answerer.locate_workers if getattr(answerer.detector, "concurrent", False) else 1
        try:
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                pending: collections.deque = collections.deque()
                for path in paths:
                    if stop.is_set():
                        return
                    pending.append(pool.submit(locate_faces, path, stoppable, answerer.spec, answerer.min_confidence,
                                               answerer.no_face, decode))
                    if len(pending) > workers:
                        yield pending.popleft().result()
                while pending:
                    yield pending.popleft().result()
        except SearchStopped:
            return

    with contextlib.closing(answer_located(located, answerer, prefetch, full_batches)) as answered:
        for item, outputs in answered:
            yield _photo_result(item, outputs, answerer)


def _photo_result(item: PhotoFaces, outputs: dict, answerer: Answerer) -> PhotoResult:
    if item.error:
        return PhotoResult(item.path, [], item.error)
    return answer_faces(item, outputs, answerer.spec, answerer.input_size)


_END = object()  # the worker's last item (`answer_located`)


def answer_located(items: Callable[[threading.Event], Iterable], answerer: Answerer, prefetch: int,
                   full_batches: bool = False) -> Iterator[Tuple[object, dict]]:
    """(item, the network's outputs for its `crops`) of each item of `items(stop)`, in order: photos
    or video frames, located (decoded, searched, cut) in a worker thread up to `prefetch` items
    ahead while the network (which releases the GIL) answers the crops of earlier items,
    `answerer.batch_faces` in one call (`answer_together`): whatever is ready when the network is
    free, or only full batches with `full_batches`. An error of the worker is raised here; a caller
    that stops early (or a SIGTERM) sets `stop`, which `items` reads to end, and the worker is
    released from a full queue."""
    located: "queue.Queue" = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def produce():
        try:
            for item in items(stop):
                located.put(item)
        finally:
            located.put(_END)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        producer = pool.submit(produce)
        try:
            pending: list = []
            done = False
            while not done:
                item = located.get()
                done = item is _END
                if not done:
                    pending.append(item)
                waiting = sum(len(p.crops) for p in pending)
                if pending and (done or waiting >= answerer.batch_faces or (located.empty() and not full_batches)):
                    yield from answer_together(pending, answerer)
                    pending = []
            producer.result()  # re-raises an unexpected error of the worker
        finally:
            stop.set()  # a SIGTERM or a caller that stops early: the worker ends at its next item
            while producer.running():  # unblock a worker waiting on a full queue
                try:
                    located.get(timeout=0.05)
                except queue.Empty:
                    pass


def answer_together(batch: Sequence, answerer: Answerer) -> Iterator[Tuple[object, dict]]:
    """(item, the network's outputs for its `crops`) of each item, all their crops answered
    `batch_faces` at a time: memory is bounded by the batch, not by a photo's or a frame's faces."""
    crops, size = [crop for item in batch for crop in item.crops], answerer.batch_faces
    parts = [{k: np.asarray(v) for k, v in answerer.predictor(crops[i : i + size]).items()}
             for i in range(0, len(crops), size)]
    outputs = {k: np.concatenate([part[k] for part in parts]) for k in parts[0]} if parts else {}
    start = 0
    for item in batch:
        end = start + len(item.crops)
        yield item, {k: v[start:end] for k, v in outputs.items()}
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


def image_paths(inputs: Sequence[str]) -> List[str]:
    """Files as given, and the files of given folders (sorted); missing ones stay, to be reported."""
    paths = []
    for item in inputs:
        if os.path.isdir(item):
            paths += sorted(os.path.join(item, n) for n in os.listdir(item) if not n.startswith("."))
        else:
            paths.append(item)
    return paths
