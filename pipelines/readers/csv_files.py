"""CSV-labelled sets: MORPH Album 2's published CSV, and a generic `path,age[,subject]` CSV."""

import csv
import math
import os
import pathlib
from typing import Iterable, Optional

from alage_pipelines.age_classes import get_age_classes
from alage_pipelines.readers.common import LabelError, integer_label, require_file
from alage_pipelines.records import AgeRecord, ReadResult

MORPH_RACES = {"W": "white", "B": "black", "A": "asian", "H": "hispanic", "O": "other"}


def _rows(csv_path: pathlib.Path, required: Iterable[str]):
    """(line number, row dict) of a headed CSV, after checking its required columns."""
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in required if name not in header]
        if missing:
            raise ValueError(f"{csv_path}: missing column(s) {missing}; header is {header}.")
        reader.fieldnames = header
        for number, row in enumerate(reader, start=2):
            yield number, {k: (v or "").strip() for k, v in row.items() if k is not None}


def _age(text: str) -> float:
    try:
        age = float(text)
    except ValueError:
        raise LabelError("age is not a number") from None
    if not math.isfinite(age) or age < 0:
        raise LabelError("age is not a finite, non-negative number")
    return age


def read_morph(csv_path, image_root=None, classes=None, races: Optional[Iterable[str]] = None) -> ReadResult:
    """MORPH Album 2: `id_num,picture_num,dob,doa,race,gender,...,age,...,photo` rows.

    Args:
      csv_path: the distributed CSV.
      image_root: folder the `photo` column is relative to (default: the CSV's folder).
      races: keep only these race codes (e.g. ["W"] for the paper's Caucasian subset).
    """
    classes = classes or get_age_classes("morph")
    csv_path = require_file(csv_path, "MORPH CSV")
    image_root = pathlib.Path(image_root) if image_root else csv_path.parent
    keep = set(races) if races else None
    records, dropped = [], []
    for number, row in _rows(csv_path, ("id_num", "age", "race", "gender", "photo")):
        where = f"{csv_path.name}:{number}"
        if keep is not None and row["race"] not in keep:
            dropped.append((where, f"race {row['race'] or '?'} not selected"))
            continue
        try:
            age = _age(row["age"])
            label = integer_label(age, classes)
        except LabelError as error:
            dropped.append((where, str(error)))
            continue
        attributes = {"race": MORPH_RACES.get(row["race"], row["race"]), "gender": row["gender"]}
        records.append(
            AgeRecord(str(image_root / row["photo"]), age, label, subject=row["id_num"], attributes=attributes)
        )
    return ReadResult("morph", records, dropped)


def read_age_csv(csv_path, classes=None, dataset: str = "custom") -> ReadResult:
    """A user's own data: a headed CSV with `path,age` and optional `subject`, `age_std`.

    Relative paths are taken from the CSV's folder.
    """
    classes = classes or get_age_classes("utkface")
    csv_path = require_file(csv_path, "age CSV")
    records, dropped, seen = [], [], {}
    for number, row in _rows(csv_path, ("path", "age")):
        where = f"{csv_path.name}:{number}"
        if not row["path"]:
            dropped.append((where, "empty path"))
            continue
        try:
            age = _age(row["age"])
            label = integer_label(age, classes)
            std = _age(row["age_std"]) if row.get("age_std") else 0.0
        except LabelError as error:
            dropped.append((where, str(error)))
            continue
        path = pathlib.Path(row["path"])
        path = path if path.is_absolute() else csv_path.parent / path
        key = os.path.normpath(str(path))
        if key in seen:
            line, seen_age = seen[key]
            if seen_age != age:
                raise ValueError(f"{where}: {row['path']} is listed again with age {age:g} (line {line} gives "
                                 f"{seen_age:g}); one photo has one age.")
            dropped.append((where, f"duplicate of line {line}"))
            continue
        seen[key] = (number, age)
        records.append(AgeRecord(str(path), age, label, subject=row.get("subject", ""), age_std=std))
    return ReadResult(dataset, records, dropped)
