"""Ages in video: faces found in each frame, followed across frames as tracks, ages smoothed
per track, an annotated video and a per-track CSV.

    frames (OpenCV: a file or a camera) -> faces (the photo path's detector and crop)
      -> tracks (greedy matching by box overlap) -> one batched network call per frame
      -> per-track age: a running average weighted by each answer's certainty (1 / std^2)

The smoothing is the posterior mean of a constant age seen through noisy answers, with an
exponential forgetting factor so that a track can follow a slow change; frame-to-frame jitter
shrinks while the first frames still count. Where the model gives an interval (a release's
`age_low`, `age_high`), its ends are smoothed with the same weights: the interval of one answer,
as a photo gets it, not narrowed by the number of frames (a face's error is mostly the same in
every frame of it).

The drawn video is written in the first codec of `CODECS` that this OpenCV build writes (tried
once, `drawn_codec`): H.264 (.mp4), else VP8 (.webm), which browsers play, else mp4v (.mp4),
which they do not, with a note saying so.
"""

import csv
import dataclasses
import functools
import io
import os
import tempfile
import time
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from keras_alage.serving import outputs, photos
from alage_pipelines import faces, files, inputs, quiet

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


def is_video(path: str) -> bool:
    return path.lower().endswith(VIDEO_EXTENSIONS)


def frames(source: Union[str, int], max_frames: Optional[int] = None) -> Iterator[Tuple[int, np.ndarray]]:
    """(index, RGB frame) from a video file or a camera index; raises ValueError if it cannot open,
    and for a pipe, socket or device named like a video before anything opens it (OpenCV would wait
    on a pipe for a writer that may never come)."""
    if isinstance(source, str) and os.path.exists(source):
        inputs.check_regular(source)  # NotRegularFile is a ValueError: the video is skipped
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise ValueError(f"{source}: cannot be opened as a video (unsupported, missing or no camera).")
    try:
        index = 0
        while max_frames is None or index < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            yield index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()


MAX_FRAME_RATE = 240.0  # above this a file's claimed rate is taken as damage (a writer then writes nothing)
DEFAULT_FRAME_RATE = 25.0


def plausible_rate(rate) -> float:
    """A claimed frame rate, or 25 where it is missing, not finite or beyond MAX_FRAME_RATE."""
    return float(rate) if rate and np.isfinite(rate) and 0 < rate <= MAX_FRAME_RATE else DEFAULT_FRAME_RATE


@dataclasses.dataclass(frozen=True)
class VideoCodec:
    """A codec OpenCV's writer is asked for (its FourCC), the container it goes in, and whether
    web browsers play it."""

    fourcc: str
    extension: str
    playable: bool

    @property
    def note(self) -> Optional[str]:
        """One line for a video browsers will not play, else None."""
        if self.playable:
            return None
        return (f"this OpenCV build writes no H.264 or VP8/VP9, so the drawn video is {self.fourcc}, which web "
                "browsers do not play (VLC and ffmpeg do)")


# In order of preference: what browsers play (VP8 before VP9: it encodes about 3 times faster
# here), then mp4v, which every OpenCV build with FFmpeg writes.
CODECS = (VideoCodec("avc1", ".mp4", True), VideoCodec("VP80", ".webm", True), VideoCodec("VP90", ".webm", True),
          VideoCodec("mp4v", ".mp4", False))


def _writer(path: str, codec: VideoCodec, rate: float, size: Tuple[int, int]):
    """OpenCV's writer, opened without FFmpeg's own lines (a missing H.264 encoder, a FourCC the
    container files under another tag): whether it opened is what counts."""
    with quiet.stderr_to(os.devnull):
        return cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*codec.fourcc), rate, size)


def writes(codec: VideoCodec) -> bool:
    """Whether this OpenCV build writes a small clip in `codec` (an encoder may be listed and
    still fail to open: H.264 through a hardware encoder with no device)."""
    with tempfile.TemporaryDirectory(prefix="alage-codec-") as folder:
        path = os.path.join(folder, "probe" + codec.extension)
        writer = _writer(path, codec, DEFAULT_FRAME_RATE, (64, 48))
        if not writer.isOpened():
            return False
        with quiet.stderr_to(os.devnull):
            for shade in (0, 128, 255):
                writer.write(np.full((48, 64, 3), shade, np.uint8))
            writer.release()
        return os.path.isfile(path) and os.path.getsize(path) > 0


@functools.lru_cache(maxsize=None)
def drawn_codec(extension: Optional[str] = None) -> VideoCodec:
    """The first codec of `CODECS` (of those for `extension`, where given) that this OpenCV build
    writes, tried once per process; raises ValueError where it writes none of them."""
    candidates = [c for c in CODECS if extension is None or c.extension == extension.lower()] or [
        dataclasses.replace(c, extension=extension, playable=False) for c in CODECS]  # a container of the caller's
    for codec in candidates:
        if writes(codec):
            return codec
    raise ValueError(f"this OpenCV build writes no video in {', '.join(c.fourcc for c in candidates)}.")


def frame_rate(source: Union[str, int]) -> float:
    capture = cv2.VideoCapture(source)
    rate = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0.0
    capture.release()
    return plausible_rate(rate)


def box_of(face: faces.Face) -> np.ndarray:
    """(x0, y0, x1, y1) of a face's detector box."""
    (cx, cy), (w, h) = face.center, face.size
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@dataclasses.dataclass
class Track:
    """One face followed across frames."""

    id: int
    box: np.ndarray
    first_frame: int
    last_frame: int
    weight: float = 0.0  # sum of the (forgotten) certainties seen
    weighted_age: float = 0.0
    interval_weight: float = 0.0  # the same, over the answers that came with an interval
    weighted_low: float = 0.0
    weighted_high: float = 0.0
    frames: int = 0
    raw_ages: List[float] = dataclasses.field(default_factory=list)
    smoothed_ages: List[float] = dataclasses.field(default_factory=list)

    @property
    def age(self) -> float:
        return self.weighted_age / self.weight if self.weight else float("nan")

    @property
    def age_low(self) -> Optional[float]:
        """The smoothed interval's lower end, None where no answer came with an interval."""
        return self.weighted_low / self.interval_weight if self.interval_weight else None

    @property
    def age_high(self) -> Optional[float]:
        return self.weighted_high / self.interval_weight if self.interval_weight else None

    @property
    def age_text(self) -> str:
        """The smoothed age, and its interval where there is one, as a photo's is written: 30.9 (20-52)."""
        return outputs.ages_text(self.age, self.age_low, self.age_high)

    def update(self, frame: int, box: np.ndarray, age: float, std: Optional[float], forgetting: float,
               low: Optional[float] = None, high: Optional[float] = None) -> float:
        """Adds one answer (with its interval `low`-`high`, where the model gives one); returns the
        smoothed age."""
        certainty = 1.0 / max(std if std is not None and np.isfinite(std) else 5.0, 0.5) ** 2
        self.weight = forgetting * self.weight + certainty
        self.weighted_age = forgetting * self.weighted_age + certainty * age
        if low is not None and high is not None:
            self.interval_weight = forgetting * self.interval_weight + certainty
            self.weighted_low = forgetting * self.weighted_low + certainty * low
            self.weighted_high = forgetting * self.weighted_high + certainty * high
        self.box, self.last_frame = box, frame
        self.frames += 1
        self.raw_ages.append(age)
        self.smoothed_ages.append(self.age)
        return self.age


class Tracker:
    """Greedy matching of each frame's faces to live tracks by box overlap (IoU)."""

    def __init__(self, min_overlap: float = 0.3, max_missed: int = 10, forgetting: float = 0.9):
        self.min_overlap, self.max_missed, self.forgetting = min_overlap, max_missed, forgetting
        self.tracks: List[Track] = []
        self._next_id = 0

    def live(self, frame: int) -> List[Track]:
        return [t for t in self.tracks if frame - t.last_frame <= self.max_missed]

    def assign(self, frame: int, boxes: Sequence[np.ndarray]) -> List[Track]:
        """The track of each box (new tracks for faces that match none)."""
        candidates = self.live(frame - 1)
        pairs = sorted(((overlap(t.box, b), ti, bi) for ti, t in enumerate(candidates) for bi, b in enumerate(boxes)),
                       reverse=True)
        chosen: Dict[int, Track] = {}
        used = set()
        for score, ti, bi in pairs:
            if score < self.min_overlap:
                break
            if bi in chosen or ti in used:
                continue
            chosen[bi], _ = candidates[ti], used.add(ti)
        for bi, box in enumerate(boxes):
            if bi not in chosen:
                chosen[bi] = Track(self._next_id, box, frame, frame)
                self._next_id += 1
                self.tracks.append(chosen[bi])
        return [chosen[bi] for bi in range(len(boxes))]


@dataclasses.dataclass
class VideoReport:
    frames: int
    seconds: float
    tracks: List[Track]
    codec: Optional[VideoCodec] = None  # the drawn video's, where one was written

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def annotate(frame: np.ndarray, found: Sequence[faces.Face], tracks: Sequence[Track]) -> np.ndarray:
    canvas = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    scale = max(1, int(round(max(frame.shape[:2]) / 500)))
    for face, track in zip(found, tracks):
        cv2.polylines(canvas, [np.int32(face.corners())], True, (0, 200, 0), 2 * scale)
        x, y = np.min(face.corners(), axis=0)
        cv2.putText(canvas, f"#{track.id} {track.age_text}", (int(x), max(12 * scale, int(y) - 4 * scale)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 200, 0), 2 * scale)
    return canvas


class LocatedFrame(NamedTuple):
    """A frame after detection and cropping: what the network still has to answer."""

    index: int
    frame: np.ndarray
    found: List[faces.Face]
    crops: List[bytes]  # JPEG face crops, as stored in the TFRecords


# Frames read, searched and cut ahead of the network, in a worker thread (`photos.answer_located`,
# as photos): the next frames' detection overlaps the network's answer, whose calls take the faces
# of every frame ready, `batch_faces` at a time; tracking then takes the frames in order, so the
# tracks are those of one frame at a time.
PREFETCH_FRAMES = 16


def _answered_frames(source, max_frames, answerer: photos.Answerer, min_confidence: float):
    """(LocatedFrame, the network's outputs for its faces) of each frame, in order; an error of the
    worker (a video that does not open) is raised here, and a caller that stops early stops it."""

    def located(stop):
        for index, frame in frames(source, max_frames):
            if stop.is_set():
                return
            found = [f for f in faces.detect_at(frame, answerer.detector, faces.UPRIGHT)
                     if f.confidence >= min_confidence]
            yield LocatedFrame(index, frame, found,
                               [faces.encode_jpeg(faces.crop_face(frame, f, answerer.spec)) for f in found])

    return photos.answer_located(located, answerer, PREFETCH_FRAMES)


def answer_video(source: Union[str, int], answerer: photos.Answerer, output_video: Optional[str] = None,
                 max_frames: Optional[int] = None, tracker: Optional[Tracker] = None) -> VideoReport:
    """Ages of every face of every frame, tracked and smoothed; writes the annotated video
    (atomically: a temporary file renamed into place, 0644 like every output) if `output_video`
    is given, in the codec `drawn_codec` chooses for its extension. Of the answerer's options, a
    video uses the detector's confidence and `batch_faces` (faces of several frames are answered
    together, that many in one network call), and a frame without a face has none."""
    min_confidence = faces.default_confidence(answerer.detector, answerer.min_confidence)
    tracker = tracker or Tracker()
    writer, temporary, codec = None, None, None
    started, count = time.perf_counter(), 0
    answered_frames = _answered_frames(source, max_frames, answerer, min_confidence)
    try:
        for (index, frame, found, _), answered in answered_frames:
            count += 1
            tracks = tracker.assign(index, [box_of(f) for f in found])
            if found:
                ages = np.asarray(answered["age"])
                spreads = np.asarray(answered["age_std"]) if "age_std" in answered else [None] * len(found)
                lows, highs = ((np.asarray(answered["age_low"]), np.asarray(answered["age_high"]))
                               if "age_low" in answered and "age_high" in answered else ([None] * len(found),) * 2)
                answers_of = zip(found, tracks, ages, spreads, lows, highs)
                for i, (face, track, age, std, low, high) in enumerate(answers_of):
                    if photos.non_finite(answered, i):
                        continue  # a refused answer (inf or nan years in any of them, as photos) moves no track
                    track.update(index, box_of(face), float(age), None if std is None else float(std),
                                 tracker.forgetting, None if low is None else float(low),
                                 None if high is None else float(high))
            if output_video:
                if writer is None:
                    directory = os.path.dirname(os.path.abspath(output_video))
                    os.makedirs(directory, exist_ok=True)
                    codec = drawn_codec(os.path.splitext(output_video)[1] or None)
                    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".video-", suffix=codec.extension)
                    os.close(handle)
                    rate = frame_rate(source) if isinstance(source, str) else 25.0
                    writer = _writer(temporary, codec, rate, (frame.shape[1], frame.shape[0]))
                    if not writer.isOpened():
                        raise ValueError(f"{output_video}: OpenCV cannot write a {codec.fourcc} video of "
                                         f"{frame.shape[1]}x{frame.shape[0]} at {rate:g} fps.")
                writer.write(annotate(frame, found, tracks))
        if count == 0:
            raise ValueError(f"{source}: no frame could be read.")
        if writer is not None:
            writer.release()
            writer = None
            if os.path.getsize(temporary) == 0:
                raise ValueError(f"{output_video}: the video writer wrote nothing; no drawn video was written.")
            os.chmod(temporary, 0o644)  # a temporary file is private; an output is 0644 (files.write_atomically)
            os.replace(temporary, output_video)
            temporary = None
    finally:
        answered_frames.close()  # an error here, or a SIGTERM: the worker is stopped and released
        if writer is not None:
            writer.release()
        if temporary and os.path.exists(temporary):
            os.remove(temporary)
    return VideoReport(count, time.perf_counter() - started, [t for t in tracker.tracks if t.frames], codec)


TRACK_COLUMNS = ("track", "frames", "first_frame", "last_frame", "age", "age_low", "age_high", "per_frame_age_std",
                 "smoothed_age_std")


def write_tracks(report: VideoReport, path: str) -> None:
    """One row per track: id, frames seen, first and last frame, smoothed age and its interval
    (empty where the model gives none), and the spread of its per-frame answers beside that of
    its smoothed ages."""

    years = outputs.years
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(TRACK_COLUMNS)
    for track in report.tracks:
        writer.writerow([track.id, track.frames, track.first_frame, track.last_frame, years(track.age),
                         years(track.age_low), years(track.age_high), f"{np.std(track.raw_ages):.2f}",
                         f"{np.std(track.smoothed_ages):.2f}"])
    files.write_atomically(path, buffer.getvalue())
