"""Ages for what a user hands the predict command: photos, folders, videos and a camera, answered
with one model, printed as they come, drawn and written out where asked.

Photos are answered in batches across photos (`photos.answer_photos`, by one `photos.Answerer`:
the model's face path and its options); videos are tracked (`video.answer_video`). With a
population prior, every photo's answer waits for all of them (`photos.adapt_to_population`).
What the answers become (lines, drawings, the table) is `outputs`'."""

import dataclasses
import os
from typing import Callable, List, Optional, Sequence, Union

from keras_alage.models import release
from keras_alage.serving import outputs as out  # the module; `outputs` here names an `Outputs`
from keras_alage.serving import photos, prior_shift, video
from alage_pipelines import files, images


@dataclasses.dataclass(frozen=True)
class Outputs:
    """Where answers go besides the console: a .csv / .json file, a folder of drawings."""

    table: Optional[str] = None
    drawings: Optional[str] = None


@dataclasses.dataclass
class Summary:
    photos: int = 0
    skipped: int = 0  # photos without an answer: failed, or every face refused
    faceless: int = 0
    videos: int = 0
    refused_faces: int = 0  # faces the model answered with a non-finite number
    kept: int = 0  # photos an interrupted run answered, kept from its table

    @property
    def answered_nothing(self) -> bool:
        return self.photos == self.skipped and not self.videos and not self.kept


def open_answerer(model_path: Optional[str] = None, crops: Optional[str] = None, crop_size: Optional[int] = None,
                  crop_margin: Optional[float] = None, detector: Optional[str] = None,
                  fallback_detector: str = "mtcnn", min_confidence: Optional[float] = None, no_face: str = "skip",
                  batch_faces: int = 32) -> photos.Answerer:
    """The face path of a model (default: the released model) with its options: the crop and
    detector it records, where the arguments do not say otherwise (`photos.face_crop_for`)."""
    predictor = photos.load_predictor(model_path or release.default_path(), crops)
    spec = photos.face_crop_for(predictor, crop_size, crop_margin, detector)
    return photos.Answerer(predictor, photos.photo_detector(spec, fallback_detector), spec, min_confidence, no_face,
                           batch_faces)


def age_photos(paths: Sequence[str], model_path: Optional[str] = None) -> List[photos.PhotoResult]:
    """Every face of these photos (files or folders) and its age, as `scripts/predict.py` answers
    them with the model's recorded crop and detector (default: the released model). (The library's
    one-call entry, named for what it gives; the act itself is `photos.answer_photos`.)"""
    return list(photos.answer_photos(photos.image_paths(paths), open_answerer(model_path)))


def answer_video(source: Union[str, int], answerer: photos.Answerer, outputs: Outputs, max_frames: Optional[int],
                 log: Callable[[str], None] = print, taken: Optional[set] = None) -> bool:
    """Tracks and ages in one video (file or camera), logged; with `outputs.drawings` the annotated
    video and its per-track CSV are written there, under a name no other output of the run (in
    `taken`) has and no existing file holds (`outputs.drawing_path`). False if the video could not
    be read."""
    name = f"camera{source}" if isinstance(source, int) else os.path.basename(source)
    drawn = None
    if outputs.drawings:
        taken = set() if taken is None else taken
        drawn = out.drawing_path(outputs.drawings, name, taken, video.drawn_codec().extension, log,
                                 companion=".tracks.csv")
        tracks = os.path.splitext(drawn)[0] + ".tracks.csv"
    try:
        report = video.answer_video(source, answerer, drawn, max_frames)
    except ValueError as error:
        log(f"{source}: skipped ({error})")
        return False
    log(f"{source}: {report.frames} frames, {report.frames_per_second:.1f} frames/s, {len(report.tracks)} track(s)")
    for track in report.tracks:
        log(f"  track {track.id}: {track.age_text} years over {track.frames} frames "
            f"({track.first_frame}-{track.last_frame})")
    if drawn:
        video.write_tracks(report, tracks)
        log(f"  wrote {drawn} and {os.path.basename(tracks)}" + (f" ({report.codec.note})" if report.codec and report.codec.note else ""))
    return True


def answer_photos(paths: Sequence[str], answerer: photos.Answerer, prior: Optional[dict],
                  log: Callable[[str], None] = print):
    """The photos' results in order; with `prior`, moved to these faces' own age prior once there
    are enough of them (`prior_shift.MIN_FACES`)."""
    answered = photos.answer_photos(paths, answerer)
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


def check_outputs(outputs: Outputs, inputs: Sequence[str], overwrite: bool = False) -> None:
    """Before any answer: the table replaces only a regular file (never a device, a pipe, a folder
    or a link), an existing table is kept unless `overwrite`, the table is none of the inputs, and
    both places are writable. Raises FileExistsError / PermissionError naming the flag."""
    if outputs.table:
        files.check_replaceable(outputs.table, f"--output={outputs.table}")
        if not outputs.table.endswith(".json"):
            files.check_replaceable(outputs.table + ".partial", f"--output={outputs.table}: {outputs.table}.partial")
        exists = os.path.exists(outputs.table)
        if exists and any(os.path.exists(p) and os.path.samefile(p, outputs.table) for p in inputs):
            raise FileExistsError(f"--output={outputs.table} is one of the inputs; name another file.")
        if exists and not overwrite:
            raise FileExistsError(f"--output={outputs.table} exists; pass --overwrite to replace it.")
    for flag, folder in (("--output", os.path.dirname(os.path.abspath(outputs.table)) if outputs.table else None),
                         ("--draw", outputs.drawings)):
        if folder is None:
            continue
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            raise PermissionError(f"{flag}: cannot create {folder} ({error.strerror}).") from None
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"{flag}: {folder} is not writable.")


def answer_inputs(inputs: Sequence[str], answerer: photos.Answerer, outputs: Outputs = Outputs(),
                  camera: Optional[int] = None, prior: Optional[dict] = None, max_frames: Optional[int] = None,
                  log: Callable[[str], None] = print, overwrite: bool = False) -> Summary:
    """Answers every photo, folder and video of `inputs` (and `camera`), logging each answer. The
    table is written as answers come (`outputs.results_writer`, which holds it: one run per table);
    a rerun after an interrupted run keeps the photos its .partial answered and answers the rest
    (with `prior`, every photo is answered again, as the prior needs them all: said). Drawings
    never take an input's name, each other's, the table's, nor an existing file's other than an
    earlier drawing of ours; `check_outputs` runs first."""
    paths = photos.image_paths(inputs)
    check_outputs(outputs, paths, overwrite)
    stills = [p for p in paths if not video.is_video(p)]
    table = out.results_writer(outputs.table, stills, resume=prior is None) if outputs.table else None
    try:
        summary = _answer_all(paths, stills, table, answerer, outputs, camera, prior, max_frames, log)
        if table:
            table.close()
    finally:
        if table:
            table.release()
    return summary


def _answer_all(paths, stills, table, answerer, outputs, camera, prior, max_frames, log) -> Summary:
    taken = out.inputs_in(outputs.drawings, paths) if outputs.drawings else set()
    if outputs.drawings and outputs.table:  # the table's names are never a drawing's, nor the reverse
        taken |= out.inputs_in(outputs.drawings, [outputs.table, outputs.table + ".partial",
                                                     os.path.join(os.path.dirname(outputs.table),
                                                                  f".{os.path.basename(outputs.table)}.lock")])
    summary = Summary()
    if table and table.started_over:
        log(f"{table.partial}: an interrupted run's answers are answered again (--adapt_prior answers all the "
            "photos together)")
    if table and table.kept:
        summary.kept = table.kept
        log(f"{table.partial}: {table.kept} photo(s) answered by an interrupted run kept; answering the rest")
        if outputs.drawings:  # their drawings keep their names: later ones are named as in one run
            for path, drawn in zip(stills, table.drawn):
                if drawn:
                    out.drawing_path(outputs.drawings, path, taken, ".jpg", lambda _: None)
        stills = [p for p, done in zip(stills, table.answered) if not done]
    sources: List[Union[str, int]] = [p for p in paths if video.is_video(p)] + ([camera] if camera is not None else [])
    summary.videos = sum(answer_video(s, answerer, outputs, max_frames, log, taken) for s in sources)
    for result in answer_photos(stills, answerer, prior, log):
        refused = sum(f.error is not None for f in result.faces)
        summary.photos += 1
        summary.skipped += bool(result.error) or refused == len(result.faces)
        summary.faceless += result.error == "no face found"
        summary.refused_faces += refused
        if table:  # saved before it is shown: an answer printed is an answer kept
            table.add(result)
        log(out.describe(result))
        if outputs.drawings and refused < len(result.faces):
            drawn = out.draw(images.read_image(result.path), result)
            out.write_drawing(out.drawing_path(outputs.drawings, result.path, taken, ".jpg", log), drawn)
    if summary.photos:
        log(f"{summary.photos - summary.skipped} photo(s) with faces, {summary.skipped} skipped")
    if summary.refused_faces:
        log(f"{summary.refused_faces} face(s) refused: the model answered them with a number that is not finite")
    if summary.faceless:
        log(f"{summary.faceless} photo(s) with no face found: if they are face crops already, --no_face=whole "
            "answers them")
    return summary
