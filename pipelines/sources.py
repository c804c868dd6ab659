"""Data sets by name: their reader, class space, face handling and the paper's protocol.

The one place that knows, for `--dataset=fgnet`, which reader to call, whether photos need
face detection and how the paper splits them, so scripts stay thin.
"""

import dataclasses
import os
from typing import Optional, Sequence

from alage_pipelines import protocols
from alage_pipelines.age_classes import get_age_classes
from alage_pipelines.readers import adience, csv_files, fairface, fgnet, imdb_wiki, lap, utkface
from alage_pipelines.records import AgeRecord, ReadResult


@dataclasses.dataclass(frozen=True)
class Source:
    """What the build needs to know about one data set.

    Attributes:
      age_classes: name of its class space (`keras_alage.age_classes`).
      detect: whether its photos need face detection (False: already face crops).
      protocol: the paper's protocol name for `make_split`.
      path_help: what `--data_dir` must point at.
    """

    age_classes: str
    detect: bool
    protocol: str
    path_help: str


SOURCES = {
    "fgnet": Source("fgnet", True, "lopo", "the FG-NET folder holding images/"),
    "utkface": Source("utkface", False, "random", "a UTKFace folder of face crops (e.g. crop_part1)"),
    "adience": Source("adience", False, "adience_5fold", "the Adience folder with fold_*_data.txt and faces/"),
    "fairface": Source("utkface", True, "random", "the FairFace folder holding images/ and labels.json"),
    "morph": Source("morph", True, "random", "the MORPH Album 2 CSV file"),
    "lap2015": Source("lap", True, "official", "the LAP 2015 folder with Train.csv and Train/"),
    "lap2016": Source("lap", True, "official", "the LAP 2016 folder with train_gt.csv and train/"),
    "imdb": Source("imdb_wiki", True, "random", "imdb.mat inside imdb_crop/"),
    "wiki": Source("imdb_wiki", True, "random", "wiki.mat inside wiki_crop/"),
    "csv": Source("utkface", True, "random", "a CSV with path,age[,subject] columns"),
}

PROTOCOLS = ("lopo", "subject_kfold", "adience_5fold", "random", "subject_split", "official")


def get_source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise ValueError(f"Unknown dataset {name!r}; known: {', '.join(sorted(SOURCES))}.") from None


def read_source(
    name: str,
    data_path,
    image_root=None,
    morph_races: Optional[Sequence[str]] = None,
    min_face_score: float = 1.0,
    age_classes: Optional[str] = None,
) -> ReadResult:
    """Reads a data set from its distributed layout at `data_path`."""
    source = get_source(name)
    classes = get_age_classes(age_classes or source.age_classes)
    if not os.path.exists(data_path):
        raise FileNotFoundError(f"--data_dir for {name} must be {source.path_help}; {data_path} does not exist.")
    if name == "fgnet":
        return fgnet.read_fgnet(data_path, classes)
    if name == "utkface":
        return utkface.read_utkface(data_path, classes)
    if name == "adience":
        return adience.read_adience(data_path)
    if name == "fairface":
        return fairface.read_fairface(data_path, classes)
    if name == "morph":
        return csv_files.read_morph(data_path, image_root, classes, races=morph_races)
    if name in ("lap2015", "lap2016"):
        return lap.read_lap(data_path, name[3:], classes=classes)
    if name in ("imdb", "wiki"):
        return imdb_wiki.read_imdb_wiki(data_path, image_root, min_face_score, classes)
    return csv_files.read_age_csv(data_path, classes)


def make_split(
    records: Sequence[AgeRecord],
    protocol: str,
    folds: int = 5,
    test_fraction: float = 0.2,
    seed: int = 0,
    test_split: str = "test",
) -> protocols.Split:
    """The protocol's split of `records` (deterministic for a seed)."""
    if protocol == "lopo":
        return protocols.leave_one_subject_out(records)
    if protocol == "subject_kfold":
        return protocols.subject_kfold(records, folds, seed)
    if protocol == "adience_5fold":
        return protocols.predefined_folds(records)
    if protocol == "random":
        return protocols.random_split(records, test_fraction, seed)
    if protocol == "subject_split":
        return protocols.subject_split(records, test_fraction, seed)
    if protocol == "official":
        train = ("train",) if test_split == "valid" else ("train", "valid")
        return protocols.official_split(records, train=train, test=test_split)
    raise ValueError(f"Unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}.")
