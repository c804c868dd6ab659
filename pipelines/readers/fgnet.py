"""FG-NET: `images/SSSAxx[a|b].JPG`, subject SSS (001-082) and age xx in the file name."""

import re

from alage_pipelines.age_classes import get_age_classes
from alage_pipelines.readers.common import read_named_files, require_dir
from alage_pipelines.records import AgeRecord, ReadResult

NAME = re.compile(r"^(?P<subject>\d{3})A(?P<age>\d{2})(?P<variant>[ab]?)\.jpg$", re.IGNORECASE)


def read_fgnet(root, classes=None) -> ReadResult:
    """Reads `root/images`; `root` is the FG-NET folder as distributed."""
    images = require_dir(require_dir(root, "FG-NET") / "images", "FG-NET images")
    records, dropped = read_named_files(
        images,
        NAME,
        "SSSAxx[a|b].JPG",
        classes or get_age_classes("fgnet"),
        lambda path, match, age, label: AgeRecord(str(path), age, label, subject=match["subject"]),
    )
    return ReadResult("fgnet", records, dropped)
