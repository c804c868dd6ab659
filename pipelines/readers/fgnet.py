"""FG-NET: `images/SSSAxx[a|b].JPG`, subject SSS (001-082) and age xx in the file name."""

import re

from keras_alage.age_classes import get_age_classes
from pipelines.readers.common import LabelError, integer_label, require_dir
from pipelines.records import AgeRecord, ReadResult

NAME = re.compile(r"^(?P<subject>\d{3})A(?P<age>\d{2})(?P<variant>[ab]?)\.jpg$", re.IGNORECASE)


def read_fgnet(root, classes=None) -> ReadResult:
    """Reads `root/images`; `root` is the FG-NET folder as distributed."""
    classes = classes or get_age_classes("fgnet")
    images = require_dir(require_dir(root, "FG-NET") / "images", "FG-NET images")
    records, dropped = [], []
    for path in sorted(images.iterdir()):
        match = NAME.match(path.name)
        if not match:
            dropped.append((str(path), "name is not SSSAxx[a|b].JPG"))
            continue
        age = int(match["age"])
        try:
            label = integer_label(age, classes)
        except LabelError as error:
            dropped.append((str(path), str(error)))
            continue
        records.append(AgeRecord(str(path), float(age), label, subject=match["subject"]))
    return ReadResult("fgnet", records, dropped)
