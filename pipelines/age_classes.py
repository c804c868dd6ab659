"""Age classes of each data set: how many softmax outputs and which age each one stands for.

The paper trains a classifier with one output per integer age (DEX) and reads the age
as the expected value over those outputs; Adience instead has eight age groups, whose
value for the expected age is the middle of the group.
"""

import dataclasses
from typing import Sequence, Tuple


@dataclasses.dataclass(frozen=True)
class AgeClasses:
    """The class space of one data set.

    Attributes:
      name: short identifier used in flags and configs.
      values: the age (years) each class stands for, in class-index order.
      labels: human-readable class names (e.g. "25-32" for an Adience group).
    """

    name: str
    values: Tuple[float, ...]
    labels: Tuple[str, ...]

    def __post_init__(self):
        if len(self.values) < 2:
            raise ValueError(
                f"AgeClasses {self.name!r} needs at least 2 classes, got {len(self.values)}."
            )
        if len(self.values) != len(self.labels):
            raise ValueError(
                f"AgeClasses {self.name!r}: {len(self.values)} values but "
                f"{len(self.labels)} labels."
            )
        if any(b <= a for a, b in zip(self.values, self.values[1:])):
            raise ValueError(f"AgeClasses {self.name!r}: values must increase strictly.")

    @property
    def num_classes(self) -> int:
        return len(self.values)

    def label_of_age(self, age: float) -> int:
        """Class index for an age in years; raises if the age lies outside the class range."""
        low, high = self.values[0], self.values[-1]
        if self.is_integer_ages:
            index = int(round(age - low))
            if not 0 <= index < self.num_classes:
                raise ValueError(
                    f"Age {age} is outside the {self.name!r} classes ({low:g}-{high:g})."
                )
            return index
        raise ValueError(
            f"{self.name!r} classes are age groups; map a label to its group explicitly."
        )

    @property
    def is_integer_ages(self) -> bool:
        first = self.values[0]
        return all(v == first + i for i, v in enumerate(self.values))


def integer_ages(name: str, first: int, last: int) -> AgeClasses:
    """One class per integer age from `first` to `last` inclusive."""
    if last <= first:
        raise ValueError(f"integer_ages({name!r}): last ({last}) must exceed first ({first}).")
    ages = tuple(float(a) for a in range(first, last + 1))
    return AgeClasses(name, ages, tuple(str(int(a)) for a in ages))


ADIENCE_GROUPS: Tuple[Tuple[int, int], ...] = (
    (0, 2), (4, 6), (8, 13), (15, 20), (25, 32), (38, 43), (48, 53), (60, 100),
)


def age_groups(name: str, groups: Sequence[Tuple[int, int]]) -> AgeClasses:
    """Classes for age groups, each valued at the middle of its range."""
    values = tuple((low + high) / 2.0 for low, high in groups)
    labels = tuple(f"{low}-{high}" for low, high in groups)
    return AgeClasses(name, values, labels)


_REGISTRY = {
    # Paper, section IV-A: 62 outputs for MORPH (ages 16-77), 70 for FG-NET (0-69),
    # 101 for LAP and IMDB-WIKI-101 (0-100); Adience has 8 groups.
    "morph": integer_ages("morph", 16, 77),
    "fgnet": integer_ages("fgnet", 0, 69),
    "lap": integer_ages("lap", 0, 100),
    "imdb_wiki": integer_ages("imdb_wiki", 0, 100),
    "utkface": integer_ages("utkface", 0, 100),
    "adience": age_groups("adience", ADIENCE_GROUPS),
}


def get_age_classes(name: str) -> AgeClasses:
    """The registered class space of a data set, by name."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"Unknown age classes {name!r}; known: {', '.join(sorted(_REGISTRY))}."
        ) from None


def registered_names() -> Tuple[str, ...]:
    return tuple(sorted(_REGISTRY))
