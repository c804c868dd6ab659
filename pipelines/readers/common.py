"""Helpers shared by the readers: class labels for ages and required paths."""

import pathlib

from keras_alage.age_classes import AgeClasses


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
