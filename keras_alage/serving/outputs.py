"""What the answers of `photos` become besides the console: each answer's line (`describe`), drawn
photos (`draw`, `write_drawing`, named by `drawing_path`) and the table of answers (`results_writer`:
a `CsvWriter` or a `JsonWriter`, by the file's extension).

Finding and answering faces is `photos`' job (and `video`'s); this module only shows and keeps what
they answered."""

import collections
import csv
import dataclasses
import io
import json
import os
import struct
from typing import Callable, Dict, List, Optional, Sequence, Union

import cv2
import numpy as np

from keras_alage.serving.photos import FaceAge, PhotoResult
from alage_pipelines import files


def ages_text(age: float, low: Optional[float] = None, high: Optional[float] = None,
              std: Optional[float] = None) -> str:
    """An age as every output shows it: with its interval (30.9 (20-52)), else its spread, else alone."""
    if low is not None:
        return f"{age:.1f} ({low:.0f}-{high:.0f})"
    return f"{age:.1f}" if std is None else f"{age:.1f} +-{std:.1f}"


def age_text(face: FaceAge) -> str:
    return ages_text(face.age, face.age_low, face.age_high, face.age_std)


def years(value: Optional[float]) -> str:
    """A table's cell of years: two decimals, empty where there is none."""
    return "" if value is None else f"{value:.2f}"


def draw(photo: np.ndarray, result: PhotoResult) -> np.ndarray:
    """The photo (RGB) with each face box, its age, and the attention box drawn."""
    canvas = cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)
    scale = max(1, int(round(max(photo.shape[:2]) / 500)))
    for face in (f for f in result.faces if f.error is None):
        cv2.polylines(canvas, [np.int32(face.corners)], True, (0, 200, 0), 2 * scale)
        if face.attention is not None:
            cv2.polylines(canvas, [np.int32(face.attention)], True, (0, 0, 255), scale)
        x, y = np.min(np.array(face.corners), axis=0)
        cv2.putText(canvas, age_text(face), (int(x), max(12 * scale, int(y) - 4 * scale)),
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


def drawing_path(folder: str, source: str, taken: set, extension: str, log: Callable[[str], None],
                 companion: Optional[str] = None) -> str:
    """Where the drawn copy of `source` goes in `folder`: a name no input or other output of the run
    holds (`taken`, updated), and no file that this run may not replace: only a drawn photo of
    ours (`is_drawing`) is replaced; any other file keeps its name and the drawing takes the
    next free one, which is said. `companion` (".tracks.csv") must be free beside it too."""

    def replaceable(name: str) -> bool:
        path = os.path.join(folder, name)
        return not os.path.lexists(path) or (extension == ".jpg" and is_drawing(path))

    def free(name: str) -> bool:
        if not replaceable(name):
            return False
        if companion is None:
            return True
        other = os.path.splitext(name)[0] + companion
        return other not in taken and not os.path.lexists(os.path.join(folder, other))

    before = set(taken)
    name = drawing_name(source, taken, extension, free)
    first = drawing_name(source, set(before), extension)  # the name it takes in an empty folder
    if name != first and first not in before:
        log(f"{os.path.join(folder, first)} is not a drawing of this command: kept; drawn as {name}")
    if companion:
        taken.add(os.path.splitext(name)[0] + companion)
    return os.path.join(folder, name)


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


class _HeldTable:
    """What both tables share: `path`, held (`files.place_lock`) from the start to `close` or
    `release` so that a second run on the same table stops at once (`files.FolderBusy`); which of
    this run's `inputs` a resumed table already `answered` and `drawn` (none unless a writer resumes
    one), how many photos it `kept` and whether it `started_over`. `partial`, where a writer keeps
    one, is checked as `path` is, both before the lock is taken; `handle` is the writer's open file,
    if any, closed on `release`."""

    def __init__(self, path: str, inputs: Optional[Sequence[str]], partial: Optional[str]):
        self.path, self.partial = path, partial
        self.answered = [False] * len(inputs or ())
        self.drawn = [False] * len(inputs or ())
        self.kept, self.started_over, self.handle = 0, False, None
        files.check_replaceable(path, f"--output={path}")
        if partial is not None:
            files.check_replaceable(partial, f"--output={path}: {partial}")
        self._hold = files.place_lock(path, "writing answers", other="another --output")
        self._hold.__enter__()

    def release(self) -> None:
        """Lets go of the table (an interrupted CSV run: the .partial stays for the rerun to resume)."""
        if self.handle is not None:
            os.close(self.handle)
            self.handle = None
        if self._hold is not None:
            self._hold.__exit__(None, None, None)
            self._hold = None


class CsvWriter(_HeldTable):
    """Writes a CSV table as answers come: each photo's rows are appended to `<path>.partial` in one
    write, which becomes `path` when the run closes the writer; an interrupted run leaves what it
    answered in the .partial file.

    One writer per table (`path` is held as `_HeldTable` says). The .partial is opened without
    following a symbolic link and must be a regular file (never written through).

    A .partial left by an interrupted run is resumed: with `inputs` (this run's photos, in order),
    the photos it answered are kept and `answered` marks them among `inputs`; the last photo it
    holds is dropped and answered again (a kill or a full disk may have torn its rows); `drawn`
    marks the kept photos that had a face answered (and so a drawing). A .partial that answers
    photos this run was not given, or that is not a table of ours, is refused (FileExistsError)
    before anything is written; `resume=False` starts over (`started_over`).
    """

    def __init__(self, path: str, inputs: Optional[Sequence[str]] = None, resume: bool = True):
        super().__init__(path, inputs, path + ".partial")
        try:
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
        self._write(csv_text(csv_rows(result)).encode("utf-8"))

    def close(self) -> None:
        try:
            os.fchmod(self.handle, 0o644)
            files.check_replaceable(self.path, f"--output={self.path}")
            os.replace(self.partial, self.path)
        finally:
            self.release()


class JsonWriter(_HeldTable):
    """Keeps the answers and writes them whole as a JSON list, atomically, at `close` (an interrupted
    run leaves no table and nothing to resume: `partial` is None, `kept` 0). Holds `path` as
    `CsvWriter` does (`_HeldTable`)."""

    def __init__(self, path: str, inputs: Optional[Sequence[str]] = None, resume: bool = True):
        self.results = []
        super().__init__(path, inputs, None)

    def add(self, result: PhotoResult) -> None:
        self.results.append(result)

    def close(self) -> None:
        try:
            rows = [{k: v for k, v in dataclasses.asdict(r).items() if k != "probs" and (k != "note" or v)}
                    for r in self.results]  # a note only where a photo has one: the rows keep their keys
            files.write_atomically(self.path, json.dumps(rows, indent=1))
        finally:
            self.release()


def results_writer(path: str, inputs: Optional[Sequence[str]] = None,
                   resume: bool = True) -> Union[CsvWriter, JsonWriter]:
    """The writer of a table of answers, by its extension: JSON for .json, else CSV (`CsvWriter`,
    which resumes an interrupted run's .partial)."""
    return (JsonWriter if path.endswith(".json") else CsvWriter)(path, inputs, resume)


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
    writer = results_writer(path, resume=False)
    for result in results:
        writer.add(result)
    writer.close()


def describe(result: PhotoResult) -> str:
    if result.error:
        return f"{result.path}: skipped ({result.error})"
    whole = " (no face found: the whole photo)"
    ages = ", ".join(f"face {f.face}: refused ({f.error})" if f.error else
                     f"face {f.face}: {age_text(f)} years{whole if f.method == 'center' else ''}"
                     for f in result.faces)
    return f"{result.path}: {ages}" + (f" ({result.note})" if result.note else "")
