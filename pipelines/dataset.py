"""tf.data input: TFRecord shards -> batches of preprocessed faces and their labels.

Everything is composed here, in `make_dataset` (what it reads and how: a `DatasetConfig`), from
the pure functions of `tfrecords` (parsing) and `augment` (preprocessing).
"""

import dataclasses
import itertools
import json
from typing import Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from alage_pipelines import augment, build, epochs, tfrecords
from alage_pipelines.configs import Augmentation, SettingRefused
from alage_pipelines.options import EVAL_VIEWS

AUTOTUNE = tf.data.AUTOTUNE


def labels_of(parsed):
    return {
        "label": tf.cast(parsed["label"], tf.int32),
        "age": parsed["age"],
        "age_std": parsed["age_std"],
        "path": parsed["path"],
    }


def training_preprocess(input_size: int, augmentation: Augmentation = Augmentation()):
    """serialized example -> (augmented training view, labels) (`augment.preprocess_for_train`)."""

    def preprocess(serialized):
        parsed = tfrecords.parse_example(serialized)
        return augment.preprocess_for_train(parsed["image"], input_size, augmentation), labels_of(parsed)

    return preprocess




def eval_preprocess(input_size: int, crops: str, view: str = "as_built", shift: Optional[int] = None):
    """serialized example -> (evaluation crops, labels); `view` "old_photo": each face as its
    fixed old print first (`augment.old_photo`, seeded by its path); `shift`: `shift_flip`'s
    distance (`augment.preprocess_for_eval`)."""
    if view not in EVAL_VIEWS:
        raise ValueError(f"evaluation view must be one of {EVAL_VIEWS}; received {view!r}.")

    def preprocess(serialized):
        parsed = tfrecords.parse_example(serialized)
        seed = augment.record_seed(parsed["path"]) if view == "old_photo" else None
        image = augment.preprocess_for_eval(augment.decode(parsed["image"]), input_size, crops=crops,
                                            old_photo_seed=seed, shift=shift)
        return image, labels_of(parsed)

    return preprocess


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """What `make_dataset` makes of TFRecord files.

    Attributes:
      batch_size: images per batch; training drops the last partial batch by default so every
        step has the same shape.
      input_size: model input side in pixels (224 in the paper).
      training: augment (`augmentation`) and shuffle (True), or evaluation crops (`crops`,
        `eval_view`) in file order (False).
      augmentation: how a training face is varied.
      crops: evaluation crops, "ten" or "shift_flip" ([batch, 10, s, s, 3]), "center_flip"
        ([batch, 2, s, s, 3]) or "center" ([batch, s, s, 3]).
      eval_view: "as_built", or "old_photo": every evaluation face as its fixed old print.
      shuffle_buffer: training shuffle buffer in records.
      seed: the training order's seed.
      repeat: endless (training loops count steps per epoch, so every replica and worker takes
        the same number of steps).
      deterministic: fixed order for a fixed seed (slower), e.g. for reproducible runs
        (evaluation always is).
      drop_remainder: drop the last partial batch; None: when training.
      cycle_length: training files read at once.
    """

    batch_size: int
    input_size: int = 224
    training: bool = False
    augmentation: Augmentation = Augmentation()
    crops: str = "ten"
    eval_view: str = "as_built"
    shuffle_buffer: int = 2048
    seed: int = 0
    repeat: bool = False
    deterministic: bool = False
    drop_remainder: Optional[bool] = None
    cycle_length: int = 4

    def __post_init__(self):
        for name in ("batch_size", "input_size", "shuffle_buffer", "cycle_length"):
            if getattr(self, name) < 1:
                raise SettingRefused(f"{{0}} must be positive; received {getattr(self, name)}.", f"DatasetConfig.{name}")
        if self.crops not in augment.CROPS:
            raise SettingRefused(f"{{0}} must be one of {augment.CROPS}; received {self.crops!r}.", "DatasetConfig.crops")
        if self.eval_view not in EVAL_VIEWS:
            raise SettingRefused(f"{{0}} must be one of {EVAL_VIEWS}; received {self.eval_view!r}.",
                                 "DatasetConfig.eval_view")


def make_dataset(file_pattern, config: DatasetConfig):
    """Batches of (images, labels) from TFRecord files (`file_pattern`: a glob or a list) as
    `config` says.

    Returns:
      A dataset of (images, {"label", "age", "age_std", "path"}); one pass is one epoch.
    """
    files = tf.io.gfile.glob(file_pattern) if isinstance(file_pattern, str) else list(file_pattern)
    if not files:
        raise FileNotFoundError(f"No TFRecord files match {file_pattern!r}.")
    training = config.training
    options = tf.data.Options()
    options.deterministic = config.deterministic or not training
    dataset = tf.data.Dataset.from_tensor_slices(sorted(files))
    if training:
        dataset = dataset.shuffle(len(files), seed=config.seed, reshuffle_each_iteration=True)
    if config.repeat:
        dataset = dataset.repeat()
    dataset = dataset.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(config.cycle_length, len(files)) if training else 1,
        num_parallel_calls=AUTOTUNE if training else None,
    )
    if training:
        dataset = dataset.shuffle(config.shuffle_buffer, seed=config.seed, reshuffle_each_iteration=True)

    preprocess = (training_preprocess(config.input_size, config.augmentation) if training
                  else eval_preprocess(config.input_size, config.crops, config.eval_view))
    dataset = dataset.map(preprocess, num_parallel_calls=AUTOTUNE)
    drop_remainder = training if config.drop_remainder is None else config.drop_remainder
    dataset = dataset.batch(config.batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(AUTOTUNE).with_options(options)


def batch_by_sizes(dataset, sizes):
    """Consecutive batches of the given sizes (e.g. `epochs.PipelinePlan.batch_sizes`, which
    differ by at most one); `dataset` must hold exactly sum(sizes) elements."""
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) < 1:
        raise ValueError(f"Batch sizes must be positive; received {sizes}.")
    ends = tf.constant(list(itertools.accumulate(sizes)), tf.int64)
    size_of = tf.constant(sizes, tf.int64)

    def batch_index(index, _):
        return tf.searchsorted(ends, [index], side="right", out_type=tf.int64)[0]

    return dataset.enumerate().group_by_window(
        key_func=batch_index,
        reduce_func=lambda _, window: window.batch(max(sizes)),
        window_size_func=lambda key: size_of[key],
    ).map(lambda _, element: element)


def make_planned_dataset(plan, input_size: int, epoch: int, pipeline: int, seed: int = 0,
                         shuffle_buffer: int = 2048, cycle_length: int = 4,
                         augmentation: Augmentation = Augmentation()):
    """One input pipeline's epoch of an `epochs.PipelinePlan`: its records, shuffled (seeded by
    seed, epoch and pipeline), augmented as `training_preprocess`, in the plan's batch sizes.

    Every one of the plan's records is yielded exactly once; with `select`, the files are read in
    order (deterministically) and only the selected records are decoded.
    """
    if not plan.files:
        raise ValueError("The plan reads no file.")
    files = tf.data.Dataset.from_tensor_slices(list(plan.files))
    if plan.select is None:
        records = files.interleave(tf.data.TFRecordDataset, cycle_length=min(cycle_length, len(plan.files)),
                                   num_parallel_calls=AUTOTUNE, deterministic=False)
    else:
        modulus, remainder = plan.select
        records = files.flat_map(tf.data.TFRecordDataset).enumerate().filter(
            lambda index, _: index % modulus == remainder).map(lambda _, record: record)
    records = records.shuffle(shuffle_buffer, seed=((seed * 1000003 + epoch) * 1009 + pipeline) % (2 ** 31))
    images = records.map(training_preprocess(input_size, augmentation), num_parallel_calls=AUTOTUNE)
    return batch_by_sizes(images, plan.batch_sizes).prefetch(AUTOTUNE)


@dataclasses.dataclass(frozen=True)
class PlannedEpochs:
    """Training input as exact passes over the training side (`epochs.plan_epoch`): the plan of
    each epoch and the dataset of each input pipeline. Multi-worker training uses it.

    Attributes:
      files, counts: the training side's shard files and their record counts (manifest).
      batch_size: the global batch.
      augmentation: how a training face is varied.
      build_id: the build's identity (its manifest's SHA-256), compared across workers.
    """

    files: Tuple[str, ...]
    counts: Tuple[int, ...]
    batch_size: int
    input_size: int
    seed: int = 0
    shuffle_buffer: int = 2048
    augmentation: Augmentation = Augmentation()
    build_id: str = ""

    def identity(self) -> str:
        """What every worker must hold alike: the build and the files and counts of its side."""
        names = [f.replace("\\", "/").rsplit("/", 1)[-1] for f in self.files]
        return json.dumps([self.build_id, names, list(self.counts), self.batch_size, self.seed])

    def steps(self, pipelines: int, replicas_per_pipeline: int) -> int:
        return epochs.steps_per_epoch(sum(self.counts), pipelines, replicas_per_pipeline, self.batch_size)

    def plan(self, epoch: int, pipelines: int, replicas_per_pipeline: int) -> epochs.EpochPlan:
        return epochs.plan_epoch(self.files, self.counts, pipelines, replicas_per_pipeline, self.batch_size,
                                 epoch, self.seed)

    def dataset(self, plan: epochs.EpochPlan, pipeline: int):
        return make_planned_dataset(plan.pipelines[pipeline], self.input_size, plan.epoch, pipeline, self.seed,
                                    self.shuffle_buffer, augmentation=self.augmentation)


def centre_crops(files: Sequence[str], count: int, input_size: int) -> np.ndarray:
    """The first `count` faces of TFRecord `files`, centre crops as a model sees them."""
    data = make_dataset(files, DatasetConfig(64, input_size, crops="center"))
    batches = [images.numpy() for images, _ in data.take(-(-count // 64))]
    if not batches:
        raise ValueError("it holds no face.")
    return np.concatenate(batches)[:count]


def first_test_faces(data: build.Build, count: int, input_size: int) -> np.ndarray:
    """Centre crops of the first `count` faces of a build's first fold's test side (e.g. probes)."""
    return centre_crops(data.first_fold_files("test"), count, input_size)
