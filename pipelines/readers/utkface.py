"""UTKFace: `AGE_GENDER_RACE_DATETIME.jpg[.chip.jpg]`; no subject identities."""

import re

from keras_alage.age_classes import get_age_classes
from pipelines.readers.common import read_named_files, require_dir
from pipelines.records import AgeRecord, ReadResult

NAME = re.compile(
    r"^(?P<age>\d{1,3})_(?P<gender>[01])_(?P<race>[0-4])_(?P<datetime>\d{8,17})\.jpg(\.chip\.jpg)?$",
    re.IGNORECASE,
)
GENDERS = {"0": "male", "1": "female"}
RACES = {"0": "white", "1": "black", "2": "asian", "3": "indian", "4": "others"}


def _record(path, match, age, label) -> AgeRecord:
    attributes = {"gender": GENDERS[match["gender"]], "race": RACES[match["race"]]}
    return AgeRecord(str(path), age, label, attributes=attributes)


def read_utkface(folder, classes=None) -> ReadResult:
    """Reads every image of one UTKFace folder (e.g. `crop_part1` or `UTKFace`)."""
    records, dropped = read_named_files(
        require_dir(folder, "UTKFace"),
        NAME,
        "AGE_GENDER_RACE_DATETIME.jpg",
        classes or get_age_classes("utkface"),
        _record,
    )
    return ReadResult("utkface", records, dropped)
