"""Epoch plans for training on several workers: one epoch is one exact pass over the training side.

Auto-sharding a shuffled, non-deterministic pipeline by element (tf.data's `DATA` policy) lets every
worker run the whole pipeline and keep every n-th element of its own order, so workers overlap or
miss records and the input work is multiplied by the number of workers. Here the split is decided
in Python, the same on every worker, from the build's manifest:

- **By file** where there are enough shards: each input pipeline (one per worker) reads only its
  own shard files; files are dealt out per epoch (largest first, to the least loaded pipeline,
  in an epoch-seeded order), so loads stay even and the assignment changes between epochs.
- **By record** otherwise: every pipeline reads all files in a fixed order and keeps the records
  whose index i has (i + epoch) % pipelines == its id; only the kept records are decoded.

Every pipeline then yields exactly `steps * replicas_per_pipeline` per-replica batches whose sizes
differ by at most one, so all workers take the same number of steps, every record of the epoch is
trained on exactly once, and no replica ever gets an empty batch. The loss is normalised by the
actual global batch of each step (`keras_alage.training.losses.stage_loss`), so uneven batches weigh each face alike.
"""

import dataclasses
import math
import random
from typing import Optional, Sequence, Tuple

# File mode is used when dealing whole files gives the most loaded pipeline at most this much
# more than the least loaded (otherwise one worker's batches would be much larger than another's).
MAX_FILE_IMBALANCE = 1.1


@dataclasses.dataclass(frozen=True)
class PipelinePlan:
    """What one input pipeline reads in one epoch.

    Attributes:
      files: the shard files it reads, in reading order.
      select: None (every record of `files`), or (modulus, remainder): keep the records whose
        index in the concatenation of `files` is congruent to remainder.
      records: how many records it yields.
      batch_sizes: the size of each per-replica batch, in order.
    """

    files: Tuple[str, ...]
    select: Optional[Tuple[int, int]]
    records: int
    batch_sizes: Tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    epoch: int
    steps: int
    mode: str  # "file" or "record"
    pipelines: Tuple[PipelinePlan, ...]


def even_sizes(total: int, parts: int) -> Tuple[int, ...]:
    """`total` split into `parts` sizes that differ by at most one, the larger first."""
    quotient, remainder = divmod(total, parts)
    return tuple([quotient + 1] * remainder + [quotient] * (parts - remainder))


def _deal_files(files, counts, pipelines: int, epoch: int, seed: int):
    order = list(range(len(files)))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    order.sort(key=lambda i: -counts[i])  # stable: equal sizes keep the epoch's shuffled order
    loads = [0] * pipelines
    dealt = [[] for _ in range(pipelines)]
    for i in order:
        target = min(range(pipelines), key=lambda p: (loads[p], p))
        dealt[target].append(files[i])
        loads[target] += counts[i]
    return dealt, loads


def plan_epoch(files: Sequence[str], counts: Sequence[int], pipelines: int, replicas_per_pipeline: int,
               global_batch: int, epoch: int, seed: int = 0) -> EpochPlan:
    """The plan of `epoch` (0-based) for `pipelines` input pipelines of `replicas_per_pipeline`.

    Args:
      files, counts: the training side's shard files and their record counts (manifest).
      global_batch: the target global batch (`steps_per_epoch`).
    """
    if len(files) != len(counts):
        raise ValueError(f"{len(files)} files but {len(counts)} record counts.")
    if pipelines < 1 or replicas_per_pipeline < 1 or global_batch < 1:
        raise ValueError("pipelines, replicas_per_pipeline and global_batch must be positive.")
    total = sum(counts)
    steps = steps_per_epoch(total, pipelines, replicas_per_pipeline, global_batch)
    mode = "record"
    if len(files) >= pipelines:
        dealt, loads = _deal_files(list(files), list(counts), pipelines, epoch, seed)
        if min(loads) >= steps * replicas_per_pipeline and max(loads) <= MAX_FILE_IMBALANCE * min(loads):
            mode = "file"
    if mode == "file":
        parts = [(tuple(d), None, load) for d, load in zip(dealt, loads)]
    else:
        parts = []
        for p in range(pipelines):
            remainder = (p - epoch) % pipelines  # index i is kept by pipeline (i + epoch) % pipelines
            parts.append((tuple(files), (pipelines, remainder), len(range(remainder, total, pipelines))))
    return EpochPlan(epoch, steps, mode, tuple(
        PipelinePlan(f, select, records, even_sizes(records, steps * replicas_per_pipeline))
        for f, select, records in parts
    ))


def steps_per_epoch(total: int, pipelines: int, replicas_per_pipeline: int, global_batch: int) -> int:
    """ceil(total / global_batch), fewer where a replica would get an empty batch; the same for
    every epoch of a run (the learning-rate schedule counts steps)."""
    replicas = pipelines * replicas_per_pipeline
    if total < replicas:
        raise ValueError(f"{total} training records cannot feed {replicas} replicas one face each.")
    return max(1, min(math.ceil(total / global_batch), (total // pipelines) // replicas_per_pipeline))
