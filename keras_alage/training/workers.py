"""Distribution across devices and workers: the strategy, which worker this is, how many there are,
agreement across workers, the chief's state sent to every worker, and the input of each epoch.

- `batch_size` is global; each replica gets batch_size / replicas.
- Several workers: each epoch is one exact pass over the training side split between the
  workers (`dataset.PlannedEpochs`, `pipelines/epochs.py`, `planned_iterator`).
- Only the chief reads its checkpoint, and sends the state to the other workers
  (`broadcast_from_chief`), so workers need no shared storage.
"""

import hashlib
import math
import os
from typing import List, Sequence

import numpy as np
import tensorflow as tf

from keras_alage.evaluation import provenance
from keras_alage.training.options import STRATEGIES


def make_strategy(name: str) -> tf.distribute.Strategy:
    """default: one device; mirrored: all local GPUs (or CPUs); multi_worker: from TF_CONFIG."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable (cluster and task).")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy {name!r}; expected one of {STRATEGIES}.")


def worker_task(strategy) -> tuple:
    """(task type, task id) of this process; ("chief", 0) outside multi-worker training."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return "chief", 0
    return resolver.task_type, resolver.task_id


def worker_count(strategy) -> int:
    """Worker processes (chief included) taking part in training; 1 outside multi-worker."""
    resolver = getattr(strategy, "cluster_resolver", None)
    spec = resolver.cluster_spec().as_dict() if resolver is not None else {}
    return max(1, sum(len(spec.get(job, ())) for job in ("chief", "worker")))


def is_chief(strategy) -> bool:
    task_type, task_id = worker_task(strategy)
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and not _has_chief(strategy))


def _has_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    return bool(resolver and "chief" in resolver.cluster_spec().as_dict())


def steps_per_epoch(records: int, batch_size: int) -> int:
    """Full global batches in one pass over `records` (at least one)."""
    return max(1, math.floor(records / batch_size))


def digest_ints(text: str, count: int = 4) -> List[int]:
    """`count` 16-bit integers from the SHA-256 of `text` (for `agree_across_workers`)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [int.from_bytes(digest[2 * i: 2 * i + 2], "big") for i in range(count)]


def agree_across_workers(strategy, values: Sequence[int], what: str) -> None:
    """Raises RunMismatch on every worker unless every worker passed the same integers (each
    below 2^20): compared through sums of values and of squares, which are equal-n only when
    all values are equal, so every worker reaches the same verdict and none is left waiting."""
    replicas = strategy.num_replicas_in_sync
    local = tf.constant([float(v) for v in values], tf.float64)

    @tf.function
    def sums():
        per_replica = strategy.run(lambda: (tf.identity(local), tf.square(local)))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in per_replica]

    total, squares = (t.numpy() for t in sums())
    if not np.array_equal(total * total, replicas * squares):
        raise provenance.RunMismatch(f"The workers do not agree on {what}.")


def broadcast_from_chief(strategy, variables: Sequence[tf.Variable]) -> None:
    """Every worker takes the chief's values of `variables`: an all-reduce sum to which only
    replica 0 (the chief's first) contributes."""

    def replica_values():
        first = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 0)
        values = [tf.where(first, tf.cast(v, tf.float64), tf.zeros_like(v, tf.float64)) for v in variables]
        return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, values)

    @tf.function
    def broadcast():
        summed = strategy.run(replica_values)
        for variable, value in zip(variables, summed):
            variable.assign(tf.cast(strategy.experimental_local_results(value)[0], variable.dtype))

    broadcast()


def endless_iterator(strategy, dataset: tf.data.Dataset):
    """The distributed iterator of an endless dataset of global batches, sharded by data."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return iter(strategy.experimental_distribute_dataset(dataset.with_options(options)))


def planned_iterator(strategy, source, epoch: int):
    """The distributed iterator of one planned epoch of `source` (a `dataset.PlannedEpochs`) and
    its step count."""
    pipelines = worker_count(strategy)
    per_pipeline = strategy.num_replicas_in_sync // pipelines
    plan = source.plan(epoch, pipelines, per_pipeline)

    def dataset_fn(context):
        if context.num_input_pipelines != pipelines:
            raise ValueError(f"{context.num_input_pipelines} input pipelines where {pipelines} were planned.")
        return source.dataset(plan, context.input_pipeline_id)

    options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
    distributed = strategy.distribute_datasets_from_function(dataset_fn, options)
    return iter(distributed), plan.steps
