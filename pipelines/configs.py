"""Config objects of the ground floor, and the one way every config refuses a setting.

A config is a frozen dataclass validated where it is made: a value it cannot take is refused
(`SettingRefused`) in one line, in the config's own words ("Augmentation.old_photo is a
probability in [0, 1]; received 1.5."), saying what it received. A command maps the field names
to its flags' names (`SettingRefused.worded`), so the same check speaks to a command-line user
in flags.

This module imports nothing heavy (a command may make its configs before TensorFlow is loaded).
"""

import dataclasses
from typing import Callable

from alage_pipelines.options import TRAIN_VIEWS

# fb.resnet.torch's random-sized crop: 8-100 % of the area (`augment.AREA_RANGE`).
MIN_CROP_AREA = 0.08


class SettingRefused(ValueError):
    """A setting a config cannot take. `template` words the refusal with `{0}`, `{1}`, ... for the
    settings it names (`fields`: "Class.field"); str() names them as fields, `worded` as a caller
    calls them (a command: its flags)."""

    def __init__(self, template: str, *fields: str):
        self.template, self.fields = template, fields
        super().__init__(self.worded(lambda field: field))

    def worded(self, name_of: Callable[[str], str]) -> str:
        text = self.template
        for index, field in enumerate(self.fields):  # not str.format: a received value may hold braces
            text = text.replace(f"{{{index}}}", name_of(field))
        return text


def check_probability(owner: str, name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise SettingRefused(f"{{0}} is a probability in [0, 1]; received {value}.", f"{owner}.{name}")


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """How a training face is varied (`augment.preprocess_for_train`); the defaults are the paper's.

    Attributes:
      min_crop_area: smallest share of the face crop a random-sized training crop covers
        (the paper's scale augmentation: 0.08); the view "paper" only.
      downscale: probability of the low-resolution augmentation (`augment.random_downscale`).
      grayscale: probability of a grey training face (`augment.random_grayscale`).
      old_photo: probability of a training face as an old scanned print (`augment.random_old_photo`).
      train_view: "paper" (random-sized crops, colour jitter, lighting) or "eval" (the
        evaluation view shifted by a few pixels: `augment.eval_view_crop`).
      jitter: the paper view's colour jitter and lighting (False: crops and flips only; no
        command turns it off: the input pipeline's benchmark does).
    """

    min_crop_area: float = MIN_CROP_AREA
    downscale: float = 0.0
    grayscale: float = 0.0
    old_photo: float = 0.0
    train_view: str = "paper"
    jitter: bool = True

    def __post_init__(self):
        if not 0.0 < self.min_crop_area <= 1.0:
            raise SettingRefused(f"{{0}} must be in (0, 1]; received {self.min_crop_area}.",
                                 "Augmentation.min_crop_area")
        for name in ("downscale", "grayscale", "old_photo"):
            check_probability("Augmentation", name, getattr(self, name))
        if self.train_view not in TRAIN_VIEWS:
            raise SettingRefused(f"{{0}} must be one of {TRAIN_VIEWS}; received {self.train_view!r}.",
                                 "Augmentation.train_view")

    @property
    def area_range(self):
        """The random-sized crop's range of area shares."""
        return (self.min_crop_area, 1.0)
