"""Face detection and the one face-crop specification shared by TFRecord building and prediction.

The paper's LAP recipe: detect faces with the photo rotated from -60 to 60 degrees in steps of
5 and by -90, 90 and 180 degrees, keep the strongest face, enlarge its box by 40% in width and
height, crop and resize to 256x256. The full search costs about 28 detections per photo, so
the upright photo is tried first and the rotations only when it gives no confident face.

A face is an oriented box in the photo's own coordinates (centre, size, angle), so the crop is
one affine warp of the original pixels whatever rotation found it.
"""

import dataclasses
import hashlib
import json
import os
import threading
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from alage_pipelines import files, inputs, package_files

UPRIGHT = 0.0
# The paper's rotation set, nearest to upright first; 27 rotations besides upright.
ROTATIONS: Tuple[float, ...] = tuple(
    float(a) for step in range(5, 65, 5) for a in (-step, step)
) + (-90.0, 90.0, 180.0)
SEARCH_ANGLES: Tuple[float, ...] = (UPRIGHT,) + ROTATIONS


@dataclasses.dataclass(frozen=True)
class CropSpec:
    """How a face box becomes the network's input image.

    Attributes:
      size: side of the square output in pixels (256 in the paper).
      margin: fraction of the box's width and height added (0.4: 20% on each side); a
        negative one cuts inside the box, as tightly cut ready-made crops need
        (`matching_margin`).
      square: make the box square on its longer side before enlarging. MTCNN's boxes are
        taller than wide; the paper's detector (Mathias et al.) gives square boxes, so this
        keeps the face's proportions as the paper's crops had them.
      detector: whose box the margin enlarges ("mtcnn", "dlib" or "blazeface"; `DETECTORS`).
        Detectors frame faces differently, so a margin means one cut only together with its
        detector's box (blazeface's box is dlib's chip, fitted to its keypoints: `BOXES_LIKE`).
    """

    size: int = 256
    margin: float = 0.4
    square: bool = True
    detector: str = "mtcnn"

    def __post_init__(self):
        if self.size < 8:
            raise ValueError(f"crop size must be at least 8 px; received {self.size}.")
        if not -0.5 <= self.margin <= 4.0:
            raise ValueError(f"crop margin must lie in [-0.5, 4]; received {self.margin}.")
        if self.detector not in DETECTORS:
            raise ValueError(f"crop detector must be one of {sorted(DETECTORS)}; received {self.detector!r}.")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "CropSpec":
        return cls(**data)


CROP_FILE = "face_crop.json"
# Detector name -> (class name in this module, confidence that counts as a face by default).
# dlib's HOG margin: 0 is dlib's own threshold, but a shirt badge in samples/ scores 0.07-0.16
# (the face 1.2-1.6); 90% of UTKFace's faces score at least 0.2 (5%: 0.18, 25%: 0.54), so 0.2
# counts as a face and weaker ones only as the rotation search's last resort.
# BlazeFace's score is its sigmoid probability; MediaPipe's own threshold 0.5.
DETECTORS = {"mtcnn": ("MtcnnDetector", 0.9), "dlib": ("DlibDetector", 0.2), "blazeface": ("KeypointDetector", 0.5)}
DETECTOR_NAMES = tuple(DETECTORS)
# What the build does with a photo where no face is found: drop it, or keep its centre crop.
BUILD_NO_FACE = ("skip", "center")


def write_crop_spec(directory: str, spec: CropSpec) -> str:
    """Records how a model's faces were cut (`face_crop.json`), so export and prediction cut alike."""
    path = os.path.join(directory, CROP_FILE)
    files.write_atomically(path, json.dumps(spec.to_json(), indent=1, sort_keys=True))
    return path


def read_crop_spec(directory: str) -> Optional[CropSpec]:
    """The crop recorded in `directory`, or None where none was."""
    path = os.path.join(directory, CROP_FILE)
    if not os.path.exists(path):
        return None
    text = inputs.read_bounded(path, 1 << 20, "a face-crop record")  # never a pipe waited on
    try:
        return CropSpec.from_json(json.loads(text))
    except (ValueError, TypeError, RecursionError) as error:
        raise ValueError(f"{path}: not a face-crop record ({str(error)[:200]}).") from None


def recorded_crop(description: Optional[dict]) -> Optional[CropSpec]:
    """The crop a model description records (a released model's model.json: its "face_crop"
    entry), or None where it records none."""
    recorded = (description or {}).get("face_crop")
    return CropSpec.from_json(recorded) if recorded else None


def crop_of_build(manifest: dict) -> Optional[CropSpec]:
    """The crop a TFRecord build cut detected faces with; None for ready-made crops (no
    detection: their cut is the source's, see `matching_margin`)."""
    if not manifest.get("face_policy", {}).get("detect") or "crop" not in manifest:
        return None
    return CropSpec.from_json(manifest["crop"])


@dataclasses.dataclass(frozen=True)
class Face:
    """A face as an oriented box in the original photo.

    Attributes:
      center: (x, y) of the box centre in photo pixels.
      size: (width, height) of the detector's box in photo pixels.
      angle: degrees the photo was rotated counter-clockwise when the face was found (the
        crop undoes it, so the face comes out upright).
      confidence: detector score; 0 for a centre-crop fallback.
      method: "upright", "rotated" or "center".
    """

    center: Tuple[float, float]
    size: Tuple[float, float]
    angle: float = 0.0
    confidence: float = 0.0
    method: str = "upright"

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Face":
        return cls(tuple(data["center"]), tuple(data["size"]), data["angle"], data["confidence"], data["method"])

    def corners(self) -> np.ndarray:
        """The four corners of the detector's box in photo pixels, for drawing."""
        (cx, cy), (w, h) = self.center, self.size
        box = np.array([[-w / 2, -h / 2], [w / 2, -h / 2], [w / 2, h / 2], [-w / 2, h / 2]])
        theta = np.deg2rad(self.angle)
        # A counter-clockwise photo rotation by theta means the face is tilted by -theta.
        rotation = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
        return box @ rotation + np.array([cx, cy])


def center_face(image_shape: Sequence[int], spec: CropSpec) -> Face:
    """The fallback for a photo with no face: the crop equals the photo's centre square."""
    height, width = image_shape[:2]
    side = min(height, width) / (1.0 + spec.margin)
    return Face(((width - 1) / 2.0, (height - 1) / 2.0), (side, side), 0.0, 0.0, "center")


def crop_box_size(face: Face, spec: CropSpec) -> Tuple[float, float]:
    width, height = face.size
    if spec.square:
        width = height = max(width, height)
    return width * (1.0 + spec.margin), height * (1.0 + spec.margin)


def _crop_matrix(face: Face, spec: CropSpec, out: int) -> np.ndarray:
    """2x3 affine map from photo pixels to an out x out crop of the face."""
    box_w, box_h = crop_box_size(face, spec)
    rotation = cv2.getRotationMatrix2D(tuple(map(float, face.center)), face.angle, 1.0)[:, :2]
    linear = np.diag([out / box_w, out / box_h]) @ rotation
    offset = np.array([(out - 1) / 2.0, (out - 1) / 2.0]) - linear @ np.asarray(face.center, np.float64)
    return np.hstack([linear, offset[:, None]])


def crop_to_photo(face: Face, spec: CropSpec, uv) -> np.ndarray:
    """Points given as fractions (u, v) of the face crop -> photo pixels."""
    inverse = cv2.invertAffineTransform(_crop_matrix(face, spec, spec.size))
    points = np.asarray(uv, np.float64) * spec.size - 0.5
    return points @ inverse[:, :2].T + inverse[:, 2]


def crop_face(image: np.ndarray, face: Face, spec: CropSpec) -> np.ndarray:
    """The face's crop as a [size, size, 3] uint8 image, upright, borders replicated.

    Shrinking goes through a native-resolution crop and area averaging, so large photos do
    not alias.
    """
    box_w, box_h = crop_box_size(face, spec)
    # Warp at native resolution (at most 4x the output) and area-resize down when shrinking.
    native = int(round(min(max(box_w, box_h), 4 * spec.size)))
    out = max(native, spec.size)
    matrix = _crop_matrix(face, spec, out)
    crop = cv2.warpAffine(image, matrix, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if out != spec.size:
        crop = cv2.resize(crop, (spec.size, spec.size), interpolation=cv2.INTER_AREA)
    return crop


# --- detection ------------------------------------------------------------------------


# x, y, width, height, confidence[, roll]: an axis-aligned box in the image searched, and for
# aligning detectors the degrees to rotate that image counter-clockwise to make the face upright.
Detection = Tuple[float, ...]


def make_detector(name: str, **arguments):
    """A detector by its `DETECTORS` name (blazeface needs its `find`: its network runs in
    TensorFlow, `keras_alage.serving.face_detectors.make_detector` gives it)."""
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; expected one of {sorted(DETECTORS)}.")
    return globals()[DETECTORS[name][0]](**arguments)


# The detectors a TFRecord build runs (on the ground floor, in Beam's workers); BlazeFace runs in
# TensorFlow in prediction's face path (`keras_alage.serving.face_detectors`).
BUILD_DETECTORS = ("mtcnn", "dlib")


# A detector whose box is another's (the same face, the same box, within what was measured): a crop
# margin recorded for one cuts the other's faces alike.
BOXES_LIKE = {"blazeface": "dlib"}


# The detector the face path uses for a crop recorded with another that has the same boxes: the one
# that stands in for its boxes (`BOXES_LIKE`, read backwards), so BlazeFace in TensorFlow for dlib's
# HOG (no native extra; 12 Mpx photos without HOG's cost), where a release's accuracy through it was
# measured level (docs/performance.md). `--detector=dlib` keeps dlib's.
FACE_PATH_DETECTOR = {like: name for name, like in BOXES_LIKE.items()}


def same_boxes(a: str, b: str) -> bool:
    """True where detectors `a` and `b` frame a face with the same box (`BOXES_LIKE`)."""
    return BOXES_LIKE.get(a, a) == BOXES_LIKE.get(b, b)


def default_confidence(detector, min_confidence: Optional[float] = None) -> float:
    """`min_confidence` where given, else the score at which `detector` reports a face by default
    (MTCNN: a probability; dlib: the HOG SVM margin, `DETECTORS`)."""
    if min_confidence is not None:
        return min_confidence
    return DETECTORS.get(getattr(detector, "name", ""), (None, 0.9))[1]


class MtcnnDetector:
    """MTCNN (the `mtcnn` package, which ships its weights), loaded on first use.

    Photos are shrunk to at most `max_side` pixels for detection: MTCNN's cost grows with
    the pixel count, and faces that matter for age are far larger than its 12 px minimum.
    """

    name = "mtcnn"

    def __init__(self, max_side: int = 800, min_face_size: int = 20):
        self.max_side = max_side
        self.min_face_size = min_face_size
        self._model = None

    def __getstate__(self):  # picklable for parallel workers: the model is rebuilt there
        return {"max_side": self.max_side, "min_face_size": self.min_face_size, "_model": None}

    def _load(self):
        if self._model is None:
            try:
                from mtcnn import MTCNN
            except ImportError as error:
                raise ImportError(
                    "Face detection needs the `mtcnn` package, a dependency of keras-alage: reinstall keras-alage."
                ) from error
            self._model = MTCNN()
        return self._model

    def detect(self, image: np.ndarray) -> List[Detection]:
        height, width = image.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        faces = self._load().detect_faces(small, min_face_size=self.min_face_size)
        return [(x / scale, y / scale, w / scale, h / scale, float(f["confidence"]))
                for f in faces for x, y, w, h in [f["box"]]]


LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"


def find_landmark_model(path: Optional[str] = None) -> str:
    """dlib's 5-point landmark model (CC0, by Davis King): `path`, else $ALAGE_DLIB_LANDMARKS,
    else the copy this package carries (`package_files.detector_file`, checked against its
    SHA-256). Raises FileNotFoundError naming what was looked for, or the carried copy that is
    not whole (`package_files.DamagedFile`)."""
    named = path or os.environ.get("ALAGE_DLIB_LANDMARKS")
    if not named:
        return package_files.detector_file(LANDMARKS_FILE)
    candidate = os.path.join(named, LANDMARKS_FILE) if os.path.isdir(named) else named
    if os.path.isfile(candidate):
        return candidate
    raise FileNotFoundError(f"dlib's {LANDMARKS_FILE} not found at {named}{'' if path else ' ($ALAGE_DLIB_LANDMARKS)'}.")


class DlibDetector:
    """dlib's HOG face detector and 5-point landmarks: an aligned face box, fast on a CPU.

    The box is dlib's face chip at padding 0 (`get_face_chip_details`): the square that the
    landmarks map to dlib's mean face, rotated so the eyes are level. UTKFace's aligned chips
    and dlib's age network are cut this way (padding 0.2, `CropSpec.margin` 0.4), so crops
    of other photos match them without a measured margin. The score is the HOG SVM margin.

    `upsample`: times the image is doubled before HOG (faces from about 80 px at 0, 40 px at 1);
    None: 0, then 1 where 0 finds nothing. Measured on FG-NET's 1,002 photos
    (benchmarks/photo_path.py): 0 answers 994 at 17.8 photos/s, 1 answers 995 at 4.7, and None
    995 at 6.5 (the rotation search doubles every faceless rotated canvas), all at the same MAE.
    """

    name = "dlib"

    def __init__(self, upsample: Optional[int] = 0, landmarks: Optional[str] = None):
        self.upsample = upsample
        self.landmarks = landmarks
        self._models = None

    @property
    def settings(self) -> str:
        """What changes its detections (keys the detection cache)."""
        return f"dlib-upsample-{'0then1' if self.upsample is None else self.upsample}"

    def __getstate__(self):  # picklable for parallel workers: the models are rebuilt there
        return {"upsample": self.upsample, "landmarks": self.landmarks, "_models": None}

    def _load(self):
        if self._models is None:
            try:
                import dlib
            except ImportError as error:
                raise ImportError(
                    "The dlib detector needs the `dlib-bin` package, a dependency of keras-alage: reinstall keras-alage."
                ) from error
            self._models = (dlib, dlib.get_frontal_face_detector(),
                            dlib.shape_predictor(find_landmark_model(self.landmarks)))
        return self._models

    def detect(self, image: np.ndarray) -> List[Detection]:
        dlib, detector, predictor = self._load()
        image = np.ascontiguousarray(image)
        boxes, scores, _ = detector.run(image, self.upsample or 0, 0.0)
        if self.upsample is None and not len(boxes):
            boxes, scores, _ = detector.run(image, 1, 0.0)
        found = []
        for box, score in zip(boxes, scores):
            chip = dlib.get_face_chip_details(predictor(image, box), 64, 0.0)
            side = chip.rect.width()  # dlib puts pixel centres on its corners; we, pixel edges (1/size apart)
            cx, cy = (chip.rect.left() + chip.rect.right()) / 2.0, (chip.rect.top() + chip.rect.bottom()) / 2.0
            found.append((cx - (side - 1) / 2.0, cy - (side - 1) / 2.0, side, side, float(score),
                          float(np.degrees(chip.angle))))
        return found


# Each detector's box over the side of the same 100 UTKFace chips (matching_margin, measured by
# benchmarks/photo_path.py): a box of one detector is this ratio of another's on the same face. A
# detector with another's boxes (`BOXES_LIKE`: blazeface, fitted to dlib's chip by `KeypointDetector`)
# has that one's fraction.
MEASURED_CHIP_BOX_FRACTIONS = {"dlib": 0.733, "mtcnn": 0.970}
CHIP_BOX_FRACTIONS = {**MEASURED_CHIP_BOX_FRACTIONS,
                      **{name: MEASURED_CHIP_BOX_FRACTIONS[like] for name, like in BOXES_LIKE.items()}}


# Where BlazeFace's eyes, nose tip and mouth (`KEYPOINTS_USED` of its six) sit in dlib's face chip
# at padding 0: (x, y) in chip sides from the chip's centre, x right and y down on the upright face.
# Medians over FG-NET's photos where both found one face (benchmarks/keypoint_cut.py).
# Fitted to one half of FG-NET's people and checked on the other (either way): the chip's centre
# within 0.024 of its side of dlib's (median; 90 % within 0.05), its side within 5 %, its roll within
# 3.7 degrees (90 %).
CHIP_KEYPOINTS = {"short": ((-0.2830, -0.2858), (0.2657, -0.2927), (-0.0020, 0.0419), (-0.0003, 0.2960)),
                  "full": ((-0.2742, -0.2931), (0.2580, -0.2895), (-0.0053, 0.0488), (-0.0072, 0.2928))}
KEYPOINTS_USED = (0, 1, 2, 3)


def chip_of_keypoints(points: np.ndarray, template: np.ndarray) -> Tuple[Tuple[float, float], float, float]:
    """((centre x, centre y), side, roll in degrees) of the square whose `template` points (chip
    sides from its centre) best fit `points` (photo pixels) by a similarity: least squares over
    scale, rotation and shift, as dlib fits its mean face to its landmarks. The roll is the
    counter-clockwise degrees that make the face upright (`Face.angle`)."""
    p = points[:, 0] + 1j * points[:, 1]
    t = template[:, 0] + 1j * template[:, 1]
    pc, tc = p - p.mean(), t - t.mean()
    a = np.sum(np.conj(tc) * pc) / max(float(np.sum(np.abs(tc) ** 2)), 1e-12)
    centre = p.mean() - a * t.mean()
    return (float(centre.real), float(centre.imag)), float(abs(a)), float(np.degrees(np.angle(a)))


def keypoints_in_chip(points: np.ndarray, face: "Face") -> np.ndarray:
    """Photo-pixel points in `face`'s box frame (box sides from its centre, upright): the inverse of
    `chip_of_keypoints` for the box a detector gave (`Face.corners`' rotation)."""
    theta = np.deg2rad(face.angle)
    rotation = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    return (np.asarray(points, np.float64) - np.asarray(face.center)) @ rotation.T / float(face.size[0])


class KeypointDetector:
    """Faces of a keypoint detector (BlazeFace), each boxed as dlib boxes it: the chip square its
    eyes, nose tip and mouth fit (`chip_of_keypoints` on `CHIP_KEYPOINTS`), rolled with the face.
    So the crops, and every cut a release makes inside them, are dlib's without dlib.

    `find`: uint8 photo [H, W, 3] -> {"keypoints" [N, 6, 2] photo pixels, "scores" [N]} (BlazeFace
    in TensorFlow); `variant` its model ("short" or "full"); `detection_side`: the longer side a
    big photo is decoded at for it
    (`images.ScaledPhoto`; its input is 128 or 192 px). 960 rather than 480: a 4000x3000 photo
    is then decoded once at 1/4, which most faces' crops can be cut from too, where 1/8 for the
    search and 1/4 for the crop read the file twice (59 against 72 ms a photo to find and cut).
    `keras_alage.serving.face_detectors.make_detector` gives it its `find`."""

    name = "blazeface"
    concurrent = True  # `find` (a TensorFlow session) may run for several photos at once; a detector
    # without this attribute is called from one thread at a time (`serving.photos.answer_photos`)

    def __init__(self, find=None, variant: str = "short", detection_side: int = 960):
        if find is None:
            raise ValueError("the blazeface detector runs BlazeFace in TensorFlow: prediction's face path has it "
                             "(keras_alage.serving.face_detectors.make_detector); builds take mtcnn or dlib.")
        if variant not in CHIP_KEYPOINTS:
            raise ValueError(f"BlazeFace variant must be one of {sorted(CHIP_KEYPOINTS)}; received {variant!r}.")
        self.find, self.variant, self.detection_side = find, variant, detection_side
        self.template = np.asarray(CHIP_KEYPOINTS[variant], np.float64)

    @property
    def settings(self) -> str:
        return f"blazeface-{self.variant}"

    def detect(self, image: np.ndarray) -> List[Detection]:
        found = self.find(np.ascontiguousarray(image))
        detections = []
        for points, score in zip(np.asarray(found["keypoints"], np.float64), np.asarray(found["scores"])):
            (cx, cy), side, roll = self._refined(image, *chip_of_keypoints(points[list(KEYPOINTS_USED)], self.template))
            # pixel centres: dlib's chip is (x, y, side, side) with its centre at x + (side - 1) / 2
            detections.append((cx - (side - 1) / 2.0, cy - (side - 1) / 2.0, side, side, float(score), roll))
        return detections

    def _refined(self, image: np.ndarray, centre, side: float, roll: float):
        """The chip fitted to keypoints found again on the region of `REFINE_SPAN` chip sides around
        it (the face then fills a third of the detector's input, its keypoints placed to a pixel or
        two of a 128 px input); the first fit where the region holds no face near it."""
        half = REFINE_SPAN * side / 2.0
        x0, y0 = int(max(0, np.floor(centre[0] - half))), int(max(0, np.floor(centre[1] - half)))
        x1, y1 = int(min(image.shape[1], np.ceil(centre[0] + half))), int(min(image.shape[0], np.ceil(centre[1] + half)))
        if min(x1 - x0, y1 - y0) < MIN_FACE_SIDE or max(x1 - x0, y1 - y0) >= REFINE_WHOLE * max(image.shape[:2]):
            return centre, side, roll  # the face already fills the photo: the first fit saw it as well
        found = self.find(np.ascontiguousarray(image[y0:y1, x0:x1]))
        best = None
        for points in np.asarray(found["keypoints"], np.float64):
            fitted = chip_of_keypoints(points[list(KEYPOINTS_USED)] + (x0, y0), self.template)
            distance = np.hypot(fitted[0][0] - centre[0], fitted[0][1] - centre[1])
            if distance < REFINE_NEAR * side and (best is None or distance < best[0]):
                best = (distance, fitted)
        return best[1] if best else (centre, side, roll)


# The region around a face found on the whole photo in which its keypoints are found again, in chip
# sides; a refit counts where its centre is within REFINE_NEAR chip sides of the first; a region that
# spans REFINE_WHOLE of the photo's longer side is not searched again (the first search saw it whole).
REFINE_SPAN = 2.5
REFINE_NEAR = 0.25
REFINE_WHOLE = 0.8


class FallbackDetector:
    """`primary`'s faces; where it finds none, `secondary`'s, rescaled to the size the primary's
    box would have (`CHIP_BOX_FRACTIONS`), so the primary's crop cuts them alike (without the
    primary's alignment). E.g. dlib's fast detector, and MTCNN for the photos HOG misses."""

    def __init__(self, primary, secondary):
        self.primary, self.secondary = primary, secondary
        # As concurrent as the primary: the secondary, seldom asked, answers one photo at a time.
        self.concurrent = getattr(primary, "concurrent", False)
        self._secondary_lock = threading.Lock()
        self.name = primary.name  # the crop and the default confidence are the primary's
        self.settings = f"{getattr(primary, 'settings', primary.name)}+{secondary.name}"
        self.scale = CHIP_BOX_FRACTIONS[primary.name] / CHIP_BOX_FRACTIONS[secondary.name]
        self.confidence = default_confidence(primary)
        self.secondary_confidence = default_confidence(secondary)

    def detect(self, image: np.ndarray) -> List[Detection]:
        found = self.primary.detect(image)
        if any(d[4] >= self.confidence for d in found):
            return found
        with self._secondary_lock:
            secondary = self.secondary.detect(image)
        rescaled = []
        for x, y, w, h, score, *roll in secondary:
            if score < self.secondary_confidence:
                continue
            side = max(w, h) * self.scale
            cx, cy = x + (w - 1) / 2.0, y + (h - 1) / 2.0
            rescaled.append((cx - (side - 1) / 2.0, cy - (side - 1) / 2.0, side, side, max(score, self.confidence),
                             *roll))
        return found + rescaled


def _rotate_expanded(image: np.ndarray, angle: float) -> Tuple[np.ndarray, np.ndarray]:
    """The photo rotated counter-clockwise by `angle` on a canvas that holds all of it,
    and the 2x3 matrix from photo to canvas coordinates."""
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2.0, (height - 1) / 2.0), angle, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(round(width * cos + height * sin)), int(round(width * sin + height * cos))
    matrix[0, 2] += (new_w - width) / 2.0
    matrix[1, 2] += (new_h - height) / 2.0
    return cv2.warpAffine(image, matrix, (new_w, new_h), flags=cv2.INTER_LINEAR), matrix


# Detection runs on a copy of the photo whose longer side is at most this many pixels, whatever the
# detector: its cost then has a bound (dlib's HOG took 1.6 s on 12 Mpx and minutes on 100 Mpx, all in
# native code that holds the interpreter, so not even SIGTERM was heard), and so has each rotated
# canvas of the search. The faces' boxes are scaled back and crops cut from the full photo. Photos
# within the bound (FG-NET's, UTKFace's, a camera's 1080p) are searched as they are. A face must be
# at least dlib's ~80 px (MTCNN's ~20 px at its own 800 px) in the copy to be found.
DETECTION_MAX_SIDE = 1600
# The smallest face side, in pixels, that counts: no face is looked for in a photo whose detection
# copy has a side shorter than this (a 1 x 100000 strip: no detector finds one there, and resizing it
# to nothing made OpenCV assert inside MTCNN), and the build stores no face smaller (`locate_face`).
MIN_FACE_SIDE = 16


def detection_side(detector) -> int:
    """The longest side `detector` needs of a photo: `DETECTION_MAX_SIDE`, unless it says it needs
    fewer (`detector.detection_side`: a detector with a small fixed input)."""
    return min(DETECTION_MAX_SIDE, int(getattr(detector, "detection_side", DETECTION_MAX_SIDE)))


class NarrowPhoto(ValueError):
    """A photo too thin to hold a face: said per photo, never searched."""


def detection_copy(image: np.ndarray, max_side: int = DETECTION_MAX_SIDE) -> Tuple[np.ndarray, float]:
    """(the photo shrunk so its longer side is at most `max_side`, the scale applied); the photo
    itself and 1.0 where it is within the bound. Raises NarrowPhoto where the copy would have a
    side under `MIN_FACE_SIDE`."""
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if min(height, width) * scale < MIN_FACE_SIDE:
        raise NarrowPhoto(f"image of {width}x{height} px is too narrow to hold a face: a side under "
                          f"{MIN_FACE_SIDE} px once the longer is {min(max(height, width), max_side)}")
    if scale == 1.0:
        return image, 1.0
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def to_full_photo(face: Face, scale: float) -> Face:
    """A face found on a `detection_copy` made at `scale`, in the full photo's pixels (pixel centres
    map through their edges: x_full = (x_copy + 0.5) / scale - 0.5)."""
    if scale == 1.0:
        return face
    (cx, cy), (w, h) = face.center, face.size
    return dataclasses.replace(face, center=((cx + 0.5) / scale - 0.5, (cy + 0.5) / scale - 0.5),
                               size=(w / scale, h / scale))


def detect_at(image: np.ndarray, detector, angle: float) -> List[Face]:
    """Faces found with the photo rotated by `angle`, as boxes in the photo's coordinates."""
    if angle == UPRIGHT:
        canvas, matrix = image, np.hstack([np.eye(2), np.zeros((2, 1))])
    else:
        canvas, matrix = _rotate_expanded(image, angle)
    inverse = cv2.invertAffineTransform(matrix)
    faces = []
    for x, y, w, h, confidence, *roll in detector.detect(canvas):
        cx, cy = inverse @ np.array([x + (w - 1) / 2.0, y + (h - 1) / 2.0, 1.0])
        method = "upright" if angle == UPRIGHT else "rotated"
        total = float(angle) + (float(roll[0]) if roll else 0.0)
        faces.append(Face((float(cx), float(cy)), (float(w), float(h)), total, float(confidence), method))
    return faces


def find_face(
    image: np.ndarray, detector, min_confidence: Optional[float] = None, full_search: bool = False
) -> Tuple[Optional[Face], int]:
    """The strongest face, searching rotations only when upright finds no confident one
    (`min_confidence` None: the detector's `default_confidence`), on the photo's `detection_copy`
    (raises NarrowPhoto for a photo too thin to hold a face).

    Returns:
      (face or None, number of detector calls made).
    """
    min_confidence = default_confidence(detector, min_confidence)
    image, scale = detection_copy(image)
    faces = detect_at(image, detector, UPRIGHT)
    calls = 1
    best = max(faces, key=lambda f: f.confidence, default=None)
    if best is not None and best.confidence >= min_confidence and not full_search:
        return to_full_photo(best, scale), calls
    for angle in ROTATIONS:
        calls += 1
        for face in detect_at(image, detector, angle):
            if best is None or face.confidence > best.confidence:
                best = face
    return (to_full_photo(best, scale) if best is not None else None), calls


@dataclasses.dataclass(frozen=True)
class MarginEstimate:
    """The crop margin at which detected-and-cropped faces match a set of ready-made crops."""

    margin: float  # CropSpec.margin to build with (may be slightly negative: crops tighter than the box)
    face_fraction: float  # median of the detector box's side over the crop's side
    measured: int
    without_face: int


def matching_margin(crops: Sequence[np.ndarray], detector, min_confidence: Optional[float] = None,
                    square: bool = True) -> MarginEstimate:
    """Measures how tightly a set of face crops (e.g. UTKFace's aligned chips) is cut.

    A model pretrained on such crops transfers to a detected data set only if that set is
    cropped alike: the detector's box on each ready-made crop, over the crop's side, gives
    the margin `CropSpec` needs to cut the same way (one box side of face per
    `1 + margin` of crop).
    """
    min_confidence = default_confidence(detector, min_confidence)
    fractions, missed = [], 0
    for crop in crops:
        found = [d for d in detector.detect(crop) if d[4] >= min_confidence]
        if not found:
            missed += 1
            continue
        _, _, width, height = max(found, key=lambda d: d[4])[:4]
        side = max(width, height) if square else height
        fractions.append(side / crop.shape[0])
    if not fractions:
        raise ValueError(f"No face with confidence >= {min_confidence} in any of the {len(crops)} crops.")
    fraction = float(np.median(fractions))
    return MarginEstimate(1.0 / fraction - 1.0, fraction, len(fractions), missed)


def translate_crop(spec: CropSpec, detector: str, chip_margins: dict) -> CropSpec:
    """The crop of `detector`'s boxes that cuts faces as `spec` cuts its own detector's.

    `chip_margins` maps detector names to `matching_margin(...).margin` on one set of
    ready-made crops (e.g. UTKFace's chips): each says how a detector's box sits in the same
    faces, so (1 + margin) scales from a box to the crop alike for every detector."""
    if detector == spec.detector:
        return spec
    missing = {spec.detector, detector} - set(chip_margins)
    if missing:
        raise ValueError(f"no measured chip margin for {sorted(missing)}; measure with matching_margin.")
    side = (1.0 + spec.margin) / (1.0 + chip_margins[spec.detector])  # the crop in chip sides
    return dataclasses.replace(spec, margin=side * (1.0 + chip_margins[detector]) - 1.0, detector=detector)


class DetectionCache:
    """Detections keyed by the photo's bytes and the search settings, one JSON file each.

    A rebuild (a new split, crop size or shard count) then skips detection entirely. Writes
    are atomic, so parallel workers may share the folder.
    """

    def __init__(self, directory):
        self.directory = os.fspath(directory)

    @staticmethod
    def key(data: bytes, settings: str) -> str:
        return hashlib.sha256(settings.encode("utf-8") + b"\0" + data).hexdigest()

    def _path(self, key: str) -> str:
        return os.path.join(self.directory, key[:2], key + ".json")

    def get(self, key: str):
        """(found, face or None)."""
        try:
            with open(self._path(key), encoding="utf-8") as handle:
                data = json.load(handle)
        except (FileNotFoundError, json.JSONDecodeError):
            return False, None
        return True, (Face.from_json(data["face"]) if data["face"] else None)

    def put(self, key: str, face: Optional[Face]) -> None:
        files.write_atomically(self._path(key), json.dumps({"face": face.to_json() if face else None}))


@dataclasses.dataclass(frozen=True)
class FacePolicy:
    """How the TFRecord build (and prediction) turns a photo into a face crop.

    Attributes:
      detect: run the detector; False for sets that are already face crops (UTKFace,
        Adience's aligned faces), which are centre-cropped and resized with the same spec.
      no_face: "skip" drops photos without a face; "center" keeps their centre crop.
      min_confidence: an upright face at least this confident ends the search (None: the
        detector's `default_confidence`).
      full_search: always try every rotation (the paper's exact recipe; about 28x slower).
    """

    detect: bool = True
    no_face: str = "skip"
    min_confidence: Optional[float] = None
    full_search: bool = False

    def __post_init__(self):
        if self.no_face not in ("skip", "center"):
            raise ValueError(f"no_face must be 'skip' or 'center'; received {self.no_face!r}.")

    def confidence(self, detector) -> float:
        return default_confidence(detector, self.min_confidence)

    def cache_settings(self, detector) -> str:
        name = getattr(detector, "settings", getattr(detector, "name", type(detector).__name__))
        return f"{name}|{self.confidence(detector)}|{self.full_search}"


class NoFaceError(ValueError):
    """No face was found and the policy skips such photos; `calls` detector calls were made."""

    def __init__(self, message: str, calls: int = 0):
        super().__init__(message)
        self.calls = calls


def locate_face(image: np.ndarray, data: bytes, policy: FacePolicy, spec: CropSpec, detector=None, cache=None):
    """The face to crop from a decoded photo under `policy`; raises NoFaceError to skip it (no face
    found, a photo too thin to hold one, a face under `MIN_FACE_SIDE`).

    Returns:
      (face, detector calls made; 0 when cached or not detecting).
    """
    if not policy.detect:
        return _big_enough(center_face(image.shape, spec), 0), 0
    settings = policy.cache_settings(detector)
    if max(image.shape[:2]) > DETECTION_MAX_SIDE:  # searched on a smaller copy: not what a cache of before found
        settings += f"|copy{DETECTION_MAX_SIDE}"
    key = cache.key(data, settings) if cache else None
    found, face = cache.get(key) if cache else (False, None)
    calls, reason = 0, "no face found"
    if not found:
        try:
            face, calls = find_face(image, detector, policy.confidence(detector), policy.full_search)
        except NarrowPhoto as error:
            reason = str(error)
        else:
            if cache:
                cache.put(key, face)
    if face is None:
        if policy.no_face == "skip":
            raise NoFaceError(reason, calls)
        face = center_face(image.shape, spec)
    return _big_enough(face, calls), calls


def _big_enough(face: Face, calls: int) -> Face:
    """`face`, unless a side of its box is under `MIN_FACE_SIDE` px (a 1 px "face" cut from a thin
    strip would be stored as a blur of one row); raises NoFaceError to skip the photo."""
    if min(face.size) < MIN_FACE_SIDE:
        raise NoFaceError(f"face of {face.size[0]:.0f}x{face.size[1]:.0f} px is under the {MIN_FACE_SIDE} px "
                          "minimum", calls)
    return face


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    """RGB uint8 -> JPEG bytes."""
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return encoded.tobytes()
