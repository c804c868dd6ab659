"""FairFace (Kärkkäinen & Joo, WACV 2021; CC BY 4.0): `images/NAME.jpg` and `labels.json`, a list of
`{id, filename, age, gender}` whose `age` is a group ("0-2", "3-9", ..., "70+"), not an age.

A record's `age` is its group's middle (70+ is read as 70-89, so 79.5): a stand-in that only a
group-aware score may use. The group itself travels in attributes ("age_group", with "age_low"
and "age_high"), and so does the labelled gender. One photo per person: each record is its own
subject.
"""

import json
import re
from typing import Tuple

from alage_pipelines.age_classes import get_age_classes
from alage_pipelines.readers.common import LabelError, integer_label, require_dir, require_file
from alage_pipelines.records import AgeRecord, ReadResult

GROUP = re.compile(r"^(?P<low>\d{1,3})(-(?P<high>\d{1,3})|\+)$")
OPEN_GROUP_SPAN = 19  # "70+" is read as 70-89 (FairFace's oldest group; few faces are older)


def group_bounds(group: str) -> Tuple[float, float]:
    """(lowest, highest) age of a FairFace group: "3-9" -> (3, 9), "70+" -> (70, 89)."""
    match = GROUP.match(str(group).strip())
    if not match:
        raise LabelError(f"age group {group!r} is not LOW-HIGH or LOW+")
    low = float(match["low"])
    high = float(match["high"]) if match["high"] else low + OPEN_GROUP_SPAN
    if high < low:
        raise LabelError(f"age group {group!r} ends before it starts")
    return low, high


def read_fairface(root, classes=None) -> ReadResult:
    """Reads `root/labels.json` and the images it names under `root/images`."""
    root = require_dir(root, "FairFace")
    images = require_dir(root / "images", "FairFace images")
    labels_path = require_file(root / "labels.json", "FairFace labels")
    try:
        with open(labels_path, encoding="utf-8") as f:
            rows = json.load(f)
    except json.JSONDecodeError as error:
        raise ValueError(f"{labels_path} is not valid JSON: {error}") from None
    if not isinstance(rows, list):
        raise ValueError(f"{labels_path} must hold a list of {{id, filename, age, gender}} objects.")
    classes = classes or get_age_classes("utkface")
    records, dropped = [], []
    for row in rows:
        name = str(row.get("filename", "")) if isinstance(row, dict) else ""
        if not name or "/" in name or name.startswith("."):
            dropped.append((repr(row)[:80], "no plain file name"))
            continue
        path = images / name
        if not path.is_file():
            dropped.append((str(path), "image missing"))
            continue
        try:
            low, high = group_bounds(row.get("age", ""))
            middle = (low + high) / 2.0
            label = integer_label(middle, classes)
        except LabelError as error:
            dropped.append((str(path), str(error)))
            continue
        attributes = {"age_group": str(row["age"]).strip(), "age_low": f"{low:g}", "age_high": f"{high:g}",
                      "gender": str(row.get("gender", "")).strip().lower()}
        records.append(AgeRecord(str(path), middle, label, subject=str(row.get("id", path.stem)),
                                 attributes=attributes))
    return ReadResult("fairface", records, dropped)
