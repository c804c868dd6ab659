"""UTKFace: `AGE_GENDER_RACE_DATETIME.jpg[.chip.jpg]`; no subject identities."""

import re

from keras_alage.age_classes import get_age_classes
from pipelines.readers.common import LabelError, integer_label, require_dir
from pipelines.records import AgeRecord, ReadResult

NAME = re.compile(
    r"^(?P<age>\d{1,3})_(?P<gender>[01])_(?P<race>[0-4])_(?P<datetime>\d{8,17})\.jpg(\.chip\.jpg)?$",
    re.IGNORECASE,
)
GENDERS = {"0": "male", "1": "female"}
RACES = {"0": "white", "1": "black", "2": "asian", "3": "indian", "4": "others"}


def read_utkface(folder, classes=None) -> ReadResult:
    """Reads every image of one UTKFace folder (e.g. `crop_part1` or `UTKFace`)."""
    classes = classes or get_age_classes("utkface")
    folder = require_dir(folder, "UTKFace")
    records, dropped = [], []
    for path in sorted(folder.iterdir()):
        match = NAME.match(path.name)
        if not match:
            dropped.append((str(path), "name is not AGE_GENDER_RACE_DATETIME.jpg"))
            continue
        age = int(match["age"])
        try:
            label = integer_label(age, classes)
        except LabelError as error:
            dropped.append((str(path), str(error)))
            continue
        attributes = {"gender": GENDERS[match["gender"]], "race": RACES[match["race"]]}
        records.append(AgeRecord(str(path), float(age), label, attributes=attributes))
    return ReadResult("utkface", records, dropped)
