import collections

import pytest

from alage_pipelines import protocols, sources
from alage_pipelines.readers import adience, fgnet
from alage_pipelines.records import AgeRecord


@pytest.fixture(scope="module")
def fgnet_records(shared_data):
    return fgnet.read_fgnet(shared_data / "fgnet").records


def subjects_of(records, paths):
    by_path = {r.path: r.subject for r in records}
    return {by_path[p] for p in paths}


def assert_partition(split, records):
    """Subject-exclusive folds whose test sets cover every image exactly once."""
    tested = collections.Counter(p for fold in split.folds for p in fold.test)
    assert set(tested) == {r.path for r in records} and set(tested.values()) == {1}
    for fold in split.folds:
        assert len(fold.train) + len(fold.test) == len(records)
        assert not subjects_of(records, fold.train) & subjects_of(records, fold.test), fold.name


def test_fgnet_leave_one_person_out(fgnet_records):
    split = protocols.leave_one_subject_out(fgnet_records)
    assert len(split.folds) == 82
    assert_partition(split, fgnet_records)


def test_fgnet_subject_kfold_is_balanced_and_reproducible(fgnet_records):
    split = protocols.subject_kfold(fgnet_records, 5, seed=3)
    assert_partition(split, fgnet_records)
    sizes = [len(f.test) for f in split.folds]
    assert max(sizes) - min(sizes) <= 20
    assert protocols.subject_kfold(fgnet_records, 5, seed=3).to_json() == split.to_json()
    assert protocols.subject_kfold(fgnet_records, 5, seed=4).to_json() != split.to_json()


def test_adience_published_folds_are_subject_exclusive(shared_data):
    records = adience.read_adience(shared_data / "adience").records
    split = protocols.predefined_folds(records)
    assert [f.name for f in split.folds] == [f"fold{i}" for i in range(5)]
    assert_partition(split, records)


def test_random_and_subject_splits(fgnet_records, tmp_path):
    split = protocols.random_split(fgnet_records, 0.2, seed=1)
    assert len(split.folds[0].test) == round(0.2 * len(fgnet_records))
    exclusive = protocols.subject_split(fgnet_records, 0.2, seed=1)
    fold = exclusive.folds[0]
    assert not subjects_of(fgnet_records, fold.train) & subjects_of(fgnet_records, fold.test)
    assert 0.18 <= len(fold.test) / len(fgnet_records) <= 0.26
    protocols.write_manifest(exclusive, tmp_path / "split.json")
    assert protocols.read_manifest(tmp_path / "split.json").to_json() == exclusive.to_json()
    assert [p.name for p in tmp_path.iterdir()] == ["split.json"], "no temporary file left behind"


def test_sample_is_deterministic_and_checked():
    records = [AgeRecord(f"/x/{i}.jpg", 30.0, 14) for i in range(100)]
    assert protocols.sample(records, 10, seed=5) == protocols.sample(list(reversed(records)), 10, seed=5)
    with pytest.raises(ValueError, match="Cannot sample 101 of 100"):
        protocols.sample(records, 101)


def test_subject_protocols_refuse_records_without_subjects():
    with pytest.raises(ValueError, match="no subject id"):
        protocols.subject_kfold([AgeRecord("/a.jpg", 3.0, 3)], 2)


def test_fgnet_builds_by_the_papers_protocol_unless_told_otherwise(fgnet_records):
    default = sources.make_split(fgnet_records, sources.SOURCES["fgnet"].protocol)
    assert default.protocol == "lopo" and len(default.folds) == 82
    assert_partition(default, fgnet_records)
    reduced = sources.make_split(fgnet_records, "subject_kfold", folds=5)
    assert len(reduced.folds) == 5
