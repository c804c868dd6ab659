"""Epoch plans for several workers: one epoch is one exact pass, split without overlap, in batches
that never leave a replica empty, read by file where the shards allow it."""

import collections

import pytest
import tensorflow as tf

from keras_alage.training import workers
from alage_pipelines import dataset, epochs
from tests.record_utils import write_records


def _indices(plan, counts):
    """Which (file, index in file) records each pipeline of a plan yields."""
    taken = []
    for pipeline in plan.pipelines:
        chosen = []
        for name in pipeline.files:
            chosen += [(name, i) for i in range(counts[int(name[1:])])]
        if pipeline.select:
            modulus, remainder = pipeline.select
            chosen = [c for k, c in enumerate(chosen) if k % modulus == remainder]
        assert len(chosen) == pipeline.records
        taken.append(chosen)
    return taken


@pytest.mark.parametrize("counts,pipelines,per_pipeline,batch", [
    ([100, 97, 103, 99, 101, 98], 2, 1, 32),  # enough even shards: by file
    ([24], 2, 1, 8),  # one shard: by record
    ([500, 10, 10], 2, 1, 16),  # uneven shards: by record
    ([7, 6, 8, 5], 2, 2, 8),  # two replicas per worker
    ([33], 3, 1, 32),  # a last step that would leave a replica empty
    ([10, 7, 8, 7, 10, 10], 2, 1, 1),  # balanced files (27 and 25) but 26 steps: by file one would run dry
])
def test_every_record_once_per_epoch_and_no_empty_batch(counts, pipelines, per_pipeline, batch):
    files = [f"f{i}" for i in range(len(counts))]
    steps = {epochs.plan_epoch(files, counts, pipelines, per_pipeline, batch, e, seed=3).steps for e in range(4)}
    assert len(steps) == 1  # the learning-rate schedule counts steps
    for epoch in range(4):
        plan = epochs.plan_epoch(files, counts, pipelines, per_pipeline, batch, epoch, seed=3)
        taken = _indices(plan, counts)
        flat = [record for part in taken for record in part]
        assert len(flat) == len(set(flat)) == sum(counts)
        for pipeline in plan.pipelines:
            assert len(pipeline.batch_sizes) == plan.steps * per_pipeline
            assert sum(pipeline.batch_sizes) == pipeline.records
            assert min(pipeline.batch_sizes) >= 1 and max(pipeline.batch_sizes) - min(pipeline.batch_sizes) <= 1


def test_by_file_where_shards_balance_and_by_record_otherwise():
    even = epochs.plan_epoch([f"f{i}" for i in range(6)], [100, 97, 103, 99, 101, 98], 2, 1, 32, 0)
    assert even.mode == "file" and all(p.select is None for p in even.pipelines)
    assert sorted(f for p in even.pipelines for f in p.files) == [f"f{i}" for i in range(6)]
    assert max(p.records for p in even.pipelines) - min(p.records for p in even.pipelines) <= 5
    uneven = epochs.plan_epoch(["f0", "f1", "f2"], [500, 10, 10], 2, 1, 16, 0)
    assert uneven.mode == "record"
    assert epochs.plan_epoch(["f0"], [24], 2, 1, 8, 0).mode == "record"


def test_the_split_changes_between_epochs_and_is_the_same_on_every_worker():
    files, counts = [f"f{i}" for i in range(8)], [50] * 8
    plans = [epochs.plan_epoch(files, counts, 2, 1, 16, e, seed=0) for e in range(6)]
    assert len({p.pipelines[0].files for p in plans}) > 1
    assert plans[2] == epochs.plan_epoch(files, counts, 2, 1, 16, 2, seed=0)
    record = [epochs.plan_epoch(["f0"], [24], 2, 1, 8, e) for e in range(2)]
    assert record[0].pipelines[0].select != record[1].pipelines[0].select


def test_steps_and_refusals():
    assert epochs.steps_per_epoch(100, 2, 1, 32) == 4  # ceil(100 / 32)
    assert epochs.steps_per_epoch(33, 3, 1, 32) == 2
    assert epochs.steps_per_epoch(3, 3, 1, 32) == 1
    with pytest.raises(ValueError, match="cannot feed 4 replicas"):
        epochs.steps_per_epoch(3, 2, 2, 8)
    with pytest.raises(ValueError, match="2 files but 1 record counts"):
        epochs.plan_epoch(["a", "b"], [3], 1, 1, 8, 0)


def test_batch_by_sizes():
    batches = [b.numpy().tolist() for b in dataset.batch_by_sizes(tf.data.Dataset.range(10), [4, 3, 3])]
    assert batches == [[0, 1, 2, 3], [4, 5, 6], [7, 8, 9]]
    with pytest.raises(ValueError, match="positive"):
        dataset.batch_by_sizes(tf.data.Dataset.range(3), [3, 0])


@pytest.mark.parametrize("counts", [[9, 8, 10, 9], [13]])
def test_planned_datasets_of_two_workers_cover_the_side_once(tmp_path, counts):
    files = tuple(str(tmp_path / f"part-{i}.tfrecord") for i in range(len(counts)))
    for i, (path, count) in enumerate(zip(files, counts)):
        write_records(path, count, num_classes=4, size=24, seed=i)
    source = dataset.PlannedEpochs(files, tuple(counts), batch_size=4, input_size=16, seed=1, shuffle_buffer=8)
    all_paths = []
    for shard in files:
        for record in tf.data.TFRecordDataset(shard):
            all_paths.append(tf.train.Example.FromString(record.numpy()).features.feature["path"].bytes_list.value[0])
    for epoch in range(2):
        plan = source.plan(epoch, 2, 1)
        seen = collections.Counter()
        for pipeline in range(2):
            batches = list(source.dataset(plan, pipeline))
            assert [len(labels["path"]) for _, labels in batches] == list(plan.pipelines[pipeline].batch_sizes)
            assert batches[0][0].shape[1:] == (16, 16, 3)
            seen.update(p for _, labels in batches for p in labels["path"].numpy())
        assert sorted(seen) == sorted(all_paths) and max(seen.values()) == 1


def test_worker_count_reads_the_cluster():
    class Resolver:
        def __init__(self, spec):
            self.spec = spec

        def cluster_spec(self):
            return tf.train.ClusterSpec(self.spec)

    class Strategy:
        def __init__(self, spec):
            self.cluster_resolver = Resolver(spec)

    assert workers.worker_count(tf.distribute.get_strategy()) == 1
    assert workers.worker_count(Strategy({"worker": ["a:1", "b:2"]})) == 2
    assert workers.worker_count(Strategy({"chief": ["c:0"], "worker": ["a:1", "b:2"], "ps": ["p:3"]})) == 3
