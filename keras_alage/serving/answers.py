"""Ages for what a user hands the predict command: photos, folders, videos and a camera, answered
with one model, printed as they come, drawn and written out where asked.

Photos are answered in batches across photos (`photos.predict_photos`); videos are tracked
(`video.predict_video`). With a population prior, every photo's answer waits for all of them
(`photos.adapt_to_population`)."""

import dataclasses
import os
from typing import Callable, List, Optional, Sequence, Union

import cv2

from keras_alage.models import release
from keras_alage.serving import photos, prior_shift, video
from pipelines import faces, images


@dataclasses.dataclass(frozen=True)
class Outputs:
    """Where answers go besides the console: a .csv / .json file, a folder of drawings."""

    table: Optional[str] = None
    drawings: Optional[str] = None


@dataclasses.dataclass
class Summary:
    photos: int = 0
    skipped: int = 0
    faceless: int = 0
    videos: int = 0

    @property
    def answered_nothing(self) -> bool:
        return self.photos == self.skipped and not self.videos


@dataclasses.dataclass(frozen=True)
class FacePath:
    """A model ready to answer photos: its serving graph, the crop its faces are cut with, and
    the detector that finds them (the crop's own, with a fallback)."""

    predict: photos.Predictor
    spec: faces.CropSpec
    detector: object


def open_face_path(model_path: Optional[str] = None, crops: Optional[str] = None, crop_size: Optional[int] = None,
                   crop_margin: Optional[float] = None, detector: Optional[str] = None,
                   fallback_detector: str = "mtcnn") -> FacePath:
    """The face path of a model (default: the released model): what it records, where the
    arguments do not say otherwise (`photos.face_crop_for`)."""
    predict = photos.load_predictor(model_path or release.default_path(), crops)
    spec = photos.face_crop_for(predict, crop_size, crop_margin, detector)
    return FacePath(predict, spec, photos.photo_detector(spec, fallback_detector))


def age_photos(paths: Sequence[str], model_path: Optional[str] = None) -> List[photos.PhotoResult]:
    """Every face of these photos (files or folders) and its age, as `scripts/predict.py` answers
    them with the model's recorded crop and detector (default: the released model)."""
    path = open_face_path(model_path)
    return list(photos.predict_photos(photos.image_paths(paths), path.predict, path.detector, path.spec,
                                      path.predict.input_size))


def answer_video(source: Union[str, int], predict: photos.Predictor, detector, spec: faces.CropSpec,
                 outputs: Outputs, min_confidence: Optional[float], max_frames: Optional[int],
                 log: Callable[[str], None] = print) -> bool:
    """Tracks and ages in one video (file or camera), logged; with `outputs.drawings` the annotated
    video and its per-track CSV are written there. False if the video could not be read."""
    name = f"camera{source}" if isinstance(source, int) else os.path.splitext(os.path.basename(source))[0]
    drawn = os.path.join(outputs.drawings, f"{name}.mp4") if outputs.drawings else None
    try:
        report = video.predict_video(source, predict, detector, spec, drawn, min_confidence, max_frames)
    except ValueError as error:
        log(f"{source}: skipped ({error})")
        return False
    log(f"{source}: {report.frames} frames, {report.frames_per_second:.1f} frames/s, {len(report.tracks)} track(s)")
    for track in report.tracks:
        log(f"  track {track.id}: {track.age:.1f} years over {track.frames} frames "
            f"({track.first_frame}-{track.last_frame})")
    if drawn:
        video.write_tracks(report, os.path.join(outputs.drawings, f"{name}.tracks.csv"))
        log(f"  wrote {drawn} and {name}.tracks.csv")
    return True


def answer_photos(paths: Sequence[str], predict: photos.Predictor, detector, spec: faces.CropSpec,
                  min_confidence: Optional[float], batch_faces: int, no_face: str,
                  prior: Optional[dict], log: Callable[[str], None] = print):
    """The photos' results in order; with `prior`, moved to these faces' own age prior once there
    are enough of them (`prior_shift.MIN_FACES`)."""
    answered = photos.predict_photos(paths, predict, detector, spec, predict.input_size, min_confidence,
                                     batch_faces, no_face=no_face)
    if prior is None:
        return answered
    answered = list(answered)
    count = sum(len(r.faces) for r in answered)
    if count < prior_shift.MIN_FACES:
        log(f"--adapt_prior: {count} faces are too few to estimate their age prior (at least "
            f"{prior_shift.MIN_FACES}); answered as trained")
        return answered
    log(f"answers moved to the age prior of these {count} faces (estimated from the answers; smoothing "
        f"{prior['smoothing']:g})")
    return photos.adapt_to_population(answered, prior)


def answer_inputs(inputs: Sequence[str], predict: photos.Predictor, detector, spec: faces.CropSpec,
                  outputs: Outputs = Outputs(), camera: Optional[int] = None, min_confidence: Optional[float] = None,
                  batch_faces: int = 32, no_face: str = "skip", prior: Optional[dict] = None,
                  max_frames: Optional[int] = None, log: Callable[[str], None] = print) -> Summary:
    """Answers every photo, folder and video of `inputs` (and `camera`), logging each answer."""
    paths = photos.image_paths(inputs)
    sources: List[Union[str, int]] = [p for p in paths if video.is_video(p)] + ([camera] if camera is not None else [])
    summary = Summary()
    summary.videos = sum(answer_video(s, predict, detector, spec, outputs, min_confidence, max_frames, log)
                         for s in sources)
    stills = [p for p in paths if not video.is_video(p)]
    results, drawn_names = [], set()
    for result in answer_photos(stills, predict, detector, spec, min_confidence, batch_faces, no_face, prior, log):
        results.append(result)
        log(photos.describe(result))
        if outputs.drawings and result.faces:
            os.makedirs(outputs.drawings, exist_ok=True)
            drawn = photos.draw(images.read_image(result.path), result)
            name = photos.drawing_name(result.path, drawn_names)
            cv2.imwrite(os.path.join(outputs.drawings, name), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    if outputs.table:
        photos.write_results(results, outputs.table)
    summary.photos = len(results)
    summary.skipped = sum(1 for r in results if r.error)
    summary.faceless = sum(1 for r in results if r.error == "no face found")
    if results:
        log(f"{summary.photos - summary.skipped} photo(s) with faces, {summary.skipped} skipped")
    if summary.faceless:
        log(f"{summary.faceless} photo(s) with no face found: if they are face crops already, --no_face=whole "
            "answers them")
    return summary
