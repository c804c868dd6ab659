"""Adience: `fold_{0..4}_data.txt` (tab-separated) + `faces/USER/<variant>.FACE_ID.IMAGE`.

The age column is messy as published: group ranges "(25, 32)", off-grid ranges "(38, 42)",
bare ages "35", and "None". A range maps to the group that contains it (allowing the
published "(8, 12)" for the 8-13 group); a bare age maps to the group that contains it.
Anything else (a range spanning two groups, an age between groups, "None", an empty
cell) is dropped and counted, never guessed.
"""

import re

from alage_pipelines.age_classes import ADIENCE_GROUPS, get_age_classes
from alage_pipelines.readers.common import require_dir, require_file
from alage_pipelines.records import AgeRecord, ReadResult

RANGE = re.compile(r"^\(\s*(\d+)\s*,\s*(\d+)\s*\)$")
FACE_VARIANTS = ("coarse_tilt_aligned_face", "landmark_aligned_face")
NUM_FOLDS = 5


def group_of_label(text: str) -> int:
    """Adience group index of an age cell; raises ValueError with the drop reason."""
    text = text.strip()
    if not text or text == "None":
        raise ValueError("no age label")
    match = RANGE.match(text)
    if match:
        low, high = int(match[1]), int(match[2])
        for index, (g_low, g_high) in enumerate(ADIENCE_GROUPS):
            if g_low <= low and high <= g_high:
                return index
        raise ValueError("age range spans groups")
    if text.isdigit():
        age = int(text)
        for index, (g_low, g_high) in enumerate(ADIENCE_GROUPS):
            if g_low <= age <= g_high:
                return index
        raise ValueError("age between groups")
    raise ValueError("unreadable age label")


def read_adience(root, folds=range(NUM_FOLDS), face_variant: str = "coarse_tilt_aligned_face") -> ReadResult:
    """Reads the fold files in `root`; records carry the fold in `attributes["fold"]`."""
    if face_variant not in FACE_VARIANTS:
        raise ValueError(f"face_variant must be one of {FACE_VARIANTS}; received {face_variant!r}.")
    classes = get_age_classes("adience")
    root = require_dir(root, "Adience")
    records, dropped = [], []
    for fold in folds:
        fold_file = require_file(root / f"fold_{fold}_data.txt", f"Adience fold {fold}")
        with open(fold_file, newline="", encoding="utf-8") as handle:
            # CRLF lines; split on "\n" only, as str.splitlines also breaks on control
            # characters that occur inside some published rows.
            lines = [line for line in handle.read().split("\n") if line.strip()]
        header = lines[0].rstrip("\r").split("\t")
        columns = {name: i for i, name in enumerate(header)}
        for needed in ("user_id", "original_image", "face_id", "age", "gender"):
            if needed not in columns:
                raise ValueError(f"{fold_file}: no {needed!r} column in header {header}.")
        for number, line in enumerate(lines[1:], start=2):
            cells = line.rstrip("\r").split("\t")
            where = f"{fold_file.name}:{number}"
            if len(cells) < len(header):
                dropped.append((where, "short row"))
                continue
            try:
                group = group_of_label(cells[columns["age"]])
            except ValueError as error:
                dropped.append((where, str(error)))
                continue
            user = cells[columns["user_id"]]
            name = f"{face_variant}.{cells[columns['face_id']]}.{cells[columns['original_image']]}"
            records.append(
                AgeRecord(
                    str(root / "faces" / user / name),
                    classes.values[group],
                    group,
                    subject=user,
                    attributes={"fold": str(fold), "gender": cells[columns["gender"]]},
                )
            )
    return ReadResult("adience", records, dropped)
