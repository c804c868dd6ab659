"""Ages in video: faces found in each frame, followed across frames as tracks, ages smoothed
per track, an annotated video and a per-track CSV.

    frames (OpenCV: a file or a camera) -> faces (the photo path's detector and crop)
      -> tracks (greedy matching by box overlap) -> one batched network call per frame
      -> per-track age: a running average weighted by each answer's certainty (1 / std^2)

The smoothing is the posterior mean of a constant age seen through noisy answers, with an
exponential forgetting factor so that a track can follow a slow change; frame-to-frame jitter
shrinks while the first frames still count.
"""

import csv
import dataclasses
import io
import os
import tempfile
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from keras_alage.serving import photos
from alage_pipelines import faces, files, inputs

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
    frames: int = 0
    raw_ages: List[float] = dataclasses.field(default_factory=list)
    smoothed_ages: List[float] = dataclasses.field(default_factory=list)

    @property
    def age(self) -> float:
        return self.weighted_age / self.weight if self.weight else float("nan")

    def update(self, frame: int, box: np.ndarray, age: float, std: Optional[float], forgetting: float) -> float:
        """Adds one answer; returns the smoothed age."""
        certainty = 1.0 / max(std if std is not None and np.isfinite(std) else 5.0, 0.5) ** 2
        self.weight = forgetting * self.weight + certainty
        self.weighted_age = forgetting * self.weighted_age + certainty * age
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

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def annotate(frame: np.ndarray, found: Sequence[faces.Face], tracks: Sequence[Track]) -> np.ndarray:
    canvas = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
    scale = max(1, int(round(max(frame.shape[:2]) / 500)))
    for face, track in zip(found, tracks):
        cv2.polylines(canvas, [np.int32(face.corners())], True, (0, 200, 0), 2 * scale)
        x, y = np.min(face.corners(), axis=0)
        cv2.putText(canvas, f"#{track.id} {track.age:.1f}", (int(x), max(12 * scale, int(y) - 4 * scale)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 200, 0), 2 * scale)
    return canvas


def predict_video(source: Union[str, int], predict: photos.Predictor, detector, spec: faces.CropSpec,
                  output_video: Optional[str] = None, min_confidence: Optional[float] = None,
                  max_frames: Optional[int] = None, tracker: Optional[Tracker] = None) -> VideoReport:
    """Ages of every face of every frame, tracked and smoothed; writes the annotated video
    (atomically: a temporary file renamed into place) if `output_video` is given."""
    min_confidence = faces.default_confidence(detector, min_confidence)
    tracker = tracker or Tracker()
    writer, temporary = None, None
    started, count = time.perf_counter(), 0
    try:
        for index, frame in frames(source, max_frames):
            count += 1
            found = [f for f in faces.detect_at(frame, detector, faces.UPRIGHT) if f.confidence >= min_confidence]
            tracks = tracker.assign(index, [box_of(f) for f in found])
            if found:
                outputs = predict([faces.encode_jpeg(faces.crop_face(frame, f, spec)) for f in found])
                ages = np.asarray(outputs["age"])
                spreads = np.asarray(outputs["age_std"]) if "age_std" in outputs else [None] * len(found)
                for face, track, age, std in zip(found, tracks, ages, spreads):
                    if not np.isfinite(age):  # a refused answer (inf or nan years) moves no track
                        continue
                    track.update(index, box_of(face), float(age), None if std is None else float(std),
                                 tracker.forgetting)
            if output_video:
                if writer is None:
                    directory = os.path.dirname(os.path.abspath(output_video))
                    os.makedirs(directory, exist_ok=True)
                    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".video-",
                                                         suffix=os.path.splitext(output_video)[1] or ".mp4")
                    os.close(handle)
                    rate = frame_rate(source) if isinstance(source, str) else 25.0
                    writer = cv2.VideoWriter(temporary, cv2.VideoWriter_fourcc(*"mp4v"), rate,
                                             (frame.shape[1], frame.shape[0]))
                    if not writer.isOpened():
                        raise ValueError(f"{output_video}: OpenCV cannot write an mp4v video of "
                                         f"{frame.shape[1]}x{frame.shape[0]} at {rate:g} fps.")
                writer.write(annotate(frame, found, tracks))
        if count == 0:
            raise ValueError(f"{source}: no frame could be read.")
        if writer is not None:
            writer.release()
            writer = None
            if os.path.getsize(temporary) == 0:
                raise ValueError(f"{output_video}: the video writer wrote nothing; no drawn video was written.")
            os.replace(temporary, output_video)
            temporary = None
    finally:
        if writer is not None:
            writer.release()
        if temporary and os.path.exists(temporary):
            os.remove(temporary)
    return VideoReport(count, time.perf_counter() - started, [t for t in tracker.tracks if t.frames])


def write_tracks(report: VideoReport, path: str) -> None:
    """One row per track: id, frames seen, first and last frame, smoothed age, and the spread
    of its per-frame answers beside that of its smoothed ages."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["track", "frames", "first_frame", "last_frame", "age", "per_frame_age_std", "smoothed_age_std"])
    for track in report.tracks:
        writer.writerow([track.id, track.frames, track.first_frame, track.last_frame, f"{track.age:.2f}",
                         f"{np.std(track.raw_ages):.2f}", f"{np.std(track.smoothed_ages):.2f}"])
    files.write_atomically(path, buffer.getvalue())
