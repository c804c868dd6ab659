"""UTKFace: `AGE_GENDER_RACE_DATETIME.jpg[.chip.jpg]`; no subject identities.

A UTKFace folder is either a folder of face images (`crop_part1`, `UTKFace`, `aligned_64px`)
or a folder of such folders, read as one set: every record says which folder it came from
(attribute "folder", e.g. to score the 200 px and 64 px chips apart), and a name found in
two folders is counted once - the larger file (the sharper copy) is kept, the other dropped
with the reason.
"""

import os
import pathlib
import re

from alage_pipelines.age_classes import get_age_classes
from alage_pipelines.readers.common import read_named_files, require_dir
from alage_pipelines.records import AgeRecord, ReadResult

NAME = re.compile(
    r"^(?P<age>\d{1,3})_(?P<gender>[01])_(?P<race>[0-4])_(?P<datetime>\d{8,17})\.jpg(\.chip\.jpg)?$",
    re.IGNORECASE,
)
GENDERS = {"0": "male", "1": "female"}
RACES = {"0": "white", "1": "black", "2": "asian", "3": "indian", "4": "others"}


def _record(path, match, age, label) -> AgeRecord:
    attributes = {
        "gender": GENDERS[match["gender"]],
        "race": RACES[match["race"]],
        "folder": pathlib.Path(path).parent.name,
    }
    return AgeRecord(str(path), age, label, attributes=attributes)


def image_folders(folder) -> list:
    """`folder` itself if it holds files, else its subfolders (sorted)."""
    folder = require_dir(folder, "UTKFace")
    if any(p.is_file() for p in folder.iterdir()):
        return [folder]
    subfolders = sorted(p for p in folder.iterdir() if p.is_dir())
    if not subfolders:
        raise FileNotFoundError(f"UTKFace folder {folder} holds neither images nor folders of images.")
    return subfolders


def face_name(path) -> str:
    """The name that identifies a face across folders: without `.chip.jpg`, lower case."""
    name = pathlib.Path(path).name.lower()
    return name[: -len(".chip.jpg")] if name.endswith(".chip.jpg") else name


def read_utkface(folder, classes=None) -> ReadResult:
    """Reads every image of a UTKFace folder, or of each image folder inside it."""
    classes = classes or get_age_classes("utkface")
    kept, dropped = {}, []
    for images in image_folders(folder):
        records, rejected = read_named_files(images, NAME, "AGE_GENDER_RACE_DATETIME.jpg", classes, _record)
        dropped.extend(rejected)
        for record in records:
            key = face_name(record.path)
            other = kept.get(key)
            if other is None:
                kept[key] = record
                continue
            keep, drop = sorted((other, record), key=lambda r: -os.path.getsize(r.path))
            kept[key] = keep
            dropped.append((drop.path, f"duplicate name of {keep.path}"))
    records = sorted(kept.values(), key=lambda r: r.path)
    return ReadResult("utkface", records, dropped)
