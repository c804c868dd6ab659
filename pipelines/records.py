"""What every data-set reader produces: labelled image records and the rows it dropped."""

import collections
import dataclasses
from typing import Dict, List, Mapping, Tuple


@dataclasses.dataclass(frozen=True)
class AgeRecord:
    """One labelled face image.

    Attributes:
      path: image file.
      age: age in years (for group labels, the group's value).
      label: class index in the data set's class space.
      subject: identity of the person where the data set has one, else "".
      age_std: standard deviation of an apparent-age label (LAP), 0.0 where unknown.
      attributes: other labels as the data set gives them (gender, race, fold, ...).
    """

    path: str
    age: float
    label: int
    subject: str = ""
    age_std: float = 0.0
    attributes: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class ReadResult:
    """Records of one data set, and each source row that was dropped with the reason."""

    dataset: str
    records: List[AgeRecord]
    dropped: List[Tuple[str, str]]  # (source row or file, reason)

    def drop_counts(self) -> Dict[str, int]:
        return dict(collections.Counter(reason for _, reason in self.dropped))

    def summary(self) -> str:
        counts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.drop_counts().items()))
        return f"{self.dataset}: {len(self.records)} records, {len(self.dropped)} dropped" + (
            f" ({counts})" if counts else ""
        )
