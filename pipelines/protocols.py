"""Evaluation protocols as deterministic splits, written as manifests for reproducibility.

A split is a list of folds; each fold names its train and test image paths. The same
records and seed always give the same manifest, so any reported number can be rerun.
"""

import dataclasses
import json
import random
from typing import Dict, List, Sequence

from alage_pipelines import files
from alage_pipelines.records import AgeRecord


@dataclasses.dataclass
class Fold:
    name: str
    train: List[str]
    test: List[str]


@dataclasses.dataclass
class Split:
    protocol: str
    seed: int
    folds: List[Fold]

    def to_json(self) -> Dict:
        return {
            "protocol": self.protocol,
            "seed": self.seed,
            "folds": [dataclasses.asdict(f) for f in self.folds],
        }


def _by_subject(records: Sequence[AgeRecord]) -> Dict[str, List[str]]:
    subjects: Dict[str, List[str]] = {}
    for record in records:
        if not record.subject:
            raise ValueError(f"{record.path}: no subject id; use a random split for this data set.")
        subjects.setdefault(record.subject, []).append(record.path)
    return subjects


def _fold_from_test(name: str, records: Sequence[AgeRecord], test: set) -> Fold:
    return Fold(
        name,
        [r.path for r in records if r.path not in test],
        [r.path for r in records if r.path in test],
    )


def predefined_folds(records: Sequence[AgeRecord], attribute: str = "fold", protocol: str = "adience_5fold") -> Split:
    """Folds fixed by the data set (Adience): fold k tests on the records marked k."""
    names = sorted({r.attributes.get(attribute, "") for r in records})
    if "" in names:
        raise ValueError(f"Every record needs attributes[{attribute!r}] for {protocol}.")
    folds = [
        _fold_from_test(f"fold{n}", records, {r.path for r in records if r.attributes[attribute] == n})
        for n in names
    ]
    return Split(protocol, 0, folds)


def official_split(
    records: Sequence[AgeRecord],
    train: Sequence[str] = ("train",),
    test: str = "test",
    attribute: str = "split",
    protocol: str = None,
) -> Split:
    """The data set's own train/test files (LAP): one fold from `attributes[attribute]`.

    Records of splits named neither in `train` nor `test` (e.g. LAP's validation set while
    testing on its test set) are left out of both sides.
    """
    have = {r.attributes.get(attribute, "") for r in records}
    missing = [name for name in (*train, test) if name not in have]
    if missing:
        raise ValueError(f"No records of split(s) {missing}; the records have {sorted(have)}.")
    fold = Fold(
        f"{'+'.join(train)}->{test}",
        [r.path for r in records if r.attributes.get(attribute) in train],
        [r.path for r in records if r.attributes.get(attribute) == test],
    )
    return Split(protocol or "official", 0, [fold])


def leave_one_subject_out(records: Sequence[AgeRecord], protocol: str = "lopo") -> Split:
    """One fold per subject (FG-NET's standard 82-fold protocol)."""
    subjects = _by_subject(records)
    return Split(
        protocol,
        0,
        [_fold_from_test(f"subject{s}", records, set(paths)) for s, paths in sorted(subjects.items())],
    )


def subject_kfold(records: Sequence[AgeRecord], k: int, seed: int = 0, protocol: str = None) -> Split:
    """k subject-exclusive folds of near-equal image counts.

    Subjects are shuffled with `seed`, then each, largest first, goes to the fold with the
    fewest images so far.
    """
    subjects = _by_subject(records)
    if not 2 <= k <= len(subjects):
        raise ValueError(f"k must lie in 2..{len(subjects)} (the number of subjects); received {k}.")
    order = sorted(subjects)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda s: -len(subjects[s]))  # stable: ties keep the shuffled order
    tests: List[set] = [set() for _ in range(k)]
    for subject in order:
        smallest = min(range(k), key=lambda i: (len(tests[i]), i))
        tests[smallest].update(subjects[subject])
    return Split(protocol or f"subject_{k}fold", seed, [_fold_from_test(f"fold{i}", records, t) for i, t in enumerate(tests)])


def random_split(records: Sequence[AgeRecord], test_fraction: float, seed: int = 0, protocol: str = None) -> Split:
    """One image-level train/test split (MORPH 80/20, IMDB-WIKI 90/10, UTKFace validation)."""
    _check_fraction(test_fraction)
    paths = sorted(r.path for r in records)
    random.Random(seed).shuffle(paths)
    test = set(paths[: int(round(test_fraction * len(paths)))])
    return Split(protocol or f"random_{test_fraction:g}", seed, [_fold_from_test("split", records, test)])


def subject_split(records: Sequence[AgeRecord], test_fraction: float, seed: int = 0, protocol: str = None) -> Split:
    """One subject-exclusive train/test split of about `test_fraction` of the images."""
    _check_fraction(test_fraction)
    subjects = _by_subject(records)
    order = sorted(subjects)
    random.Random(seed).shuffle(order)
    target = test_fraction * len(records)
    test: set = set()
    for subject in order:
        if len(test) >= target:
            break
        test.update(subjects[subject])
    return Split(protocol or f"subject_{test_fraction:g}", seed, [_fold_from_test("split", records, test)])


def sample(records: Sequence[AgeRecord], count: int, seed: int = 0) -> List[AgeRecord]:
    """`count` records drawn without replacement (the paper's 5,475 MORPH Caucasians)."""
    if count > len(records):
        raise ValueError(f"Cannot sample {count} of {len(records)} records.")
    ordered = sorted(records, key=lambda r: r.path)
    return sorted(random.Random(seed).sample(ordered, count), key=lambda r: r.path)


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1); received {fraction}.")


def write_manifest(split: Split, path) -> None:
    """Writes the split as JSON atomically: a crash never leaves a half-written manifest."""
    files.write_atomically(path, json.dumps(split.to_json(), indent=1, sort_keys=True))


def read_manifest(path) -> Split:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    return Split(data["protocol"], data["seed"], [Fold(**fold) for fold in data["folds"]])
