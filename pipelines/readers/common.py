"""Helpers shared by the readers: class labels for ages and required paths."""

import pathlib

from alage_pipelines.age_classes import AgeClasses


class LabelError(ValueError):
    """A row whose label cannot be used; the message is the reason counted in the report."""


def integer_label(age: float, classes: AgeClasses) -> int:
    """Class of an age in an integer-age class space, rounding to the nearest year."""
    try:
        return classes.label_of_age(round(age))
    except ValueError:
        raise LabelError(
            f"age outside {classes.values[0]:g}-{classes.values[-1]:g}"
        ) from None


def require_dir(path, what: str) -> pathlib.Path:
    path = pathlib.Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {path}")
    return path


def require_file(path, what: str) -> pathlib.Path:
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    return path


def read_named_files(folder, pattern, name_rule: str, classes, make_record):
    """Records of a folder whose file names carry the labels (FG-NET, UTKFace).

    Args:
      folder: the images' folder.
      pattern: compiled regex with an "age" group; files that do not match are dropped
        with the reason "name is not {name_rule}".
      classes: the class space; ages outside it are dropped with the reason.
      make_record: (path, match, age, label) -> AgeRecord.

    Returns:
      (records, dropped) lists.
    """
    records, dropped = [], []
    for path in sorted(pathlib.Path(folder).iterdir()):
        match = pattern.match(path.name)
        if not match:
            dropped.append((str(path), f"name is not {name_rule}"))
            continue
        age = int(match["age"])
        try:
            label = integer_label(age, classes)
        except LabelError as error:
            dropped.append((str(path), str(error)))
            continue
        records.append(make_record(path, match, float(age), label))
    return records, dropped
