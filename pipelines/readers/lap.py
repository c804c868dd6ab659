"""ChaLearn LAP 2015 / 2016 apparent age: ground-truth CSVs with mean age and standard deviation.

LAP 2016 ships `train_gt.csv`, `valid_gt.csv`, `test_gt.csv` (header `image,mean,stdv`) beside
the `train/`, `valid/`, `test/` image folders. LAP 2015 ships `Train.csv`, `Validation.csv`,
`Test.csv` beside `Train/`, `Validation/`, `Test/`, `;`-separated without a header. Both forms
are parsed (delimiter and header are detected), so either edition reads as distributed.
"""

import csv
import pathlib
from typing import Dict, Iterable, Tuple

from alage_pipelines.age_classes import get_age_classes
from alage_pipelines.readers.common import LabelError, integer_label, require_dir, require_file
from alage_pipelines.records import AgeRecord, ReadResult

# split -> (ground-truth file, image folder) as each edition distributes them.
TEST_SPLITS = ("valid", "test")  # which LAP split is the test side
LAYOUTS: Dict[str, Dict[str, Tuple[str, str]]] = {
    "2015": {
        "train": ("Train.csv", "Train"),
        "valid": ("Validation.csv", "Validation"),
        "test": ("Test.csv", "Test"),
    },
    "2016": {
        "train": ("train_gt.csv", "train"),
        "valid": ("valid_gt.csv", "valid"),
        "test": ("test_gt.csv", "test"),
    },
}


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise LabelError(f"{what} is not a number") from None
    if value != value or value < 0:
        raise LabelError(f"{what} is not a number")
    return value


def _ground_truth_rows(csv_path: pathlib.Path):
    """(line number, [image, mean, std]) of a LAP ground-truth file in either edition's form."""
    text = csv_path.read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    delimiter = ";" if lines and lines[0].count(";") > lines[0].count(",") else ","
    for number, row in enumerate(csv.reader(lines, delimiter=delimiter), start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        if number == 1 and cells and cells[0].lower() in ("image", "file", "filename", "name"):
            continue  # header
        yield number, cells


def read_lap_file(csv_path, image_dir, split: str, classes=None, dataset: str = "lap") -> ReadResult:
    """One ground-truth file and its image folder: records carrying mean age and std."""
    classes = classes or get_age_classes("lap")
    csv_path = require_file(csv_path, "LAP ground-truth")
    image_dir = require_dir(image_dir, "LAP image")
    records, dropped = [], []
    for number, cells in _ground_truth_rows(csv_path):
        where = f"{csv_path.name}:{number}"
        if len(cells) < 3:
            dropped.append((where, "short row (needs image, mean, std)"))
            continue
        try:
            mean = _number(cells[1], "mean age")
            std = _number(cells[2], "age std")
            label = integer_label(mean, classes)
        except LabelError as error:
            dropped.append((where, str(error)))
            continue
        records.append(
            AgeRecord(str(image_dir / cells[0]), mean, label, age_std=std, attributes={"split": split})
        )
    return ReadResult(dataset, records, dropped)


def read_lap(root, edition: str = "2016", splits: Iterable[str] = ("train", "valid", "test"), classes=None) -> ReadResult:
    """The chosen splits of a LAP edition laid out as distributed under `root`.

    Each record's `attributes["split"]` names its official split (see
    `protocols.official_split`).
    """
    if edition not in LAYOUTS:
        raise ValueError(f"LAP edition must be one of {sorted(LAYOUTS)}; received {edition!r}.")
    root = require_dir(root, f"LAP {edition}")
    layout = LAYOUTS[edition]
    records, dropped = [], []
    for split in splits:
        if split not in layout:
            raise ValueError(f"LAP split must be one of {sorted(layout)}; received {split!r}.")
        gt_name, folder = layout[split]
        part = read_lap_file(root / gt_name, root / folder, split, classes)
        records += part.records
        dropped += part.dropped
    return ReadResult(f"lap{edition}", records, dropped)
