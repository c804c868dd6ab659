"""IMDB-WIKI: `imdb_crop/imdb.mat` or `wiki_crop/wiki.mat` as distributed (MATLAB structs).

Age is the photo year minus the birth year, the birth date being a MATLAB serial date
number; faces are kept when the detector scored one face confidently and no second face.
"""

import datetime
import math
import pathlib

import numpy as np

from alage_pipelines.age_classes import get_age_classes
from alage_pipelines.readers.common import LabelError, integer_label, require_file
from alage_pipelines.records import AgeRecord, ReadResult

GENDERS = {1.0: "male", 0.0: "female"}
# MATLAB's datenum counts days from year 0; Python's ordinals from year 1 (366 days later).
_MATLAB_EPOCH_OFFSET = 366


def birth_year(matlab_datenum: float) -> int:
    """Year of a MATLAB serial date number."""
    ordinal = int(matlab_datenum) - _MATLAB_EPOCH_OFFSET
    if ordinal < 1:
        raise LabelError("date of birth is not a valid date")
    return datetime.date.fromordinal(ordinal).year


def _field(struct, name: str) -> np.ndarray:
    try:
        return np.asarray(struct[name][0, 0]).reshape(-1)
    except (KeyError, ValueError, IndexError):
        raise ValueError(f"field {name!r} missing from the .mat struct") from None


def _text(cell) -> str:
    value = np.asarray(cell).reshape(-1)
    return str(value[0]) if value.size else ""


def read_imdb_wiki(mat_path, image_root=None, min_face_score: float = 1.0, classes=None) -> ReadResult:
    """Reads `imdb.mat` or `wiki.mat`.

    Args:
      mat_path: the distributed .mat file; its struct is `imdb` or `wiki`.
      image_root: folder `full_path` is relative to (default: the .mat file's folder).
      min_face_score: faces scored below this are dropped (DEX used 1.0 on its cleaned set);
        photos with a second face are always dropped, as their label may name either person.
    """
    from scipy.io import loadmat  # optional dependency, needed only for this reader

    classes = classes or get_age_classes("imdb_wiki")
    mat_path = require_file(mat_path, "IMDB-WIKI .mat")
    image_root = pathlib.Path(image_root) if image_root else mat_path.parent
    try:
        mat = loadmat(str(mat_path))
    except Exception as error:  # scipy raises several types for a bad file
        raise ValueError(f"{mat_path}: not a readable MATLAB file ({error})") from None
    key = next((k for k in ("imdb", "wiki") if k in mat), None)
    if key is None:
        raise ValueError(f"{mat_path}: neither an 'imdb' nor a 'wiki' struct inside.")
    struct = mat[key]
    try:
        dob = _field(struct, "dob").astype(float)
        taken = _field(struct, "photo_taken").astype(float)
        paths = _field(struct, "full_path")
        gender = _field(struct, "gender").astype(float)
        score = _field(struct, "face_score").astype(float)
        second = _field(struct, "second_face_score").astype(float)
    except ValueError as error:
        raise ValueError(f"{mat_path}: {error}") from None
    celeb = _field(struct, "celeb_id") if key == "imdb" else None
    if not len(dob) == len(taken) == len(paths) == len(score) == len(second):
        raise ValueError(f"{mat_path}: the struct's fields differ in length.")

    records, dropped = [], []
    for i in range(len(paths)):
        path = _text(paths[i])
        where = f"{mat_path.name}[{i}] {path}"
        if not math.isfinite(score[i]):
            dropped.append((where, "no face detected"))
            continue
        if score[i] < min_face_score:
            dropped.append((where, "face score below threshold"))
            continue
        if not math.isnan(second[i]):
            dropped.append((where, "second face in the photo"))
            continue
        try:
            if not math.isfinite(dob[i]):
                raise LabelError("date of birth is not a valid date")
            age = float(taken[i] - birth_year(dob[i]))
            label = integer_label(age, classes)
        except LabelError as error:
            dropped.append((where, str(error)))
            continue
        attributes = {"gender": GENDERS.get(gender[i], "unknown")}
        subject = str(int(celeb[i])) if celeb is not None else ""
        records.append(AgeRecord(str(image_root / path), age, label, subject=subject, attributes=attributes))
    return ReadResult(key, records, dropped)
