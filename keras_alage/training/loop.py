"""One training loop for every distribution strategy: default, mirrored and multi-worker.

A custom loop (`strategy.run` + GradientTape + a Keras optimizer) rather than `model.fit`:
`fit` fails under MultiWorkerMirroredStrategy with TF 2.21 / Keras 3.15 (keras-team/keras
20585), and one loop that behaves the same under all three strategies is easier to trust.

- `batch_size` is global; each replica gets batch_size / replicas and the loss is averaged
  over the global batch, so gradients and the learning rate mean the same on any number of
  devices.
- The attention LSTM's carried memory is all-reduced across replicas
  (`attention.CarriedStateLSTM`), so the attention stage computes on N replicas what one
  device computes on the whole batch. Batch norm keeps per-replica statistics in the
  global stage, as `model.fit` and Torch's data parallelism do: Keras'
  `BatchNormalization(synchronized=True)` gave gradients that differed from one device
  from run to run on two CPUs (its backward all-reduces are not ordered across replica
  threads), so it is not used (BUILD_NOTES.md).
- Weight decay is Torch's (the paper's code): `weight_decay * w` added to each gradient,
  i.e. L2 regularisation, not decoupled decay.
- Several workers: each epoch is one exact pass over the training side split between the
  workers (`dataset.PlannedEpochs`, `pipelines/epochs.py`); the loss of a step is divided by
  its actual global batch, so uneven planned batches weigh each face alike.
- Resumable: a checkpoint (model, optimizer, epoch) after every epoch; a restarted run
  continues after the last completed epoch. Only the chief reads its checkpoint, and sends the
  state to the other workers, so workers need no shared storage. Best weights (by validation
  MAE) and the last checkpoints are kept; TensorBoard gets losses, accuracy, MAE, learning
  rate and validation faces with the attention box drawn.
"""

import dataclasses
import errno
import glob
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_alage.evaluation import provenance
from keras_alage.models import attention, release
from keras_alage.training import stages
from keras_alage.training.options import STRATEGIES
from alage_pipelines import files
from alage_pipelines.augment import denormalize

HISTORY = "history.jsonl"
BEST_WEIGHTS = "best.weights.h5"
FINAL_MODEL = release.FINAL_MODEL
CHECKPOINTS = "checkpoints"
AUDIT = "input_audit"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one stage (the paper's section IV by default).

    Attributes:
      run_dir: where checkpoints, logs, history and the final model go.
      stage: "global" or "attention".
      epochs: total epochs of the run (a resumed run stops at the same total).
      steps_per_epoch: global batches per epoch (required by `Trainer`; `fold_runs.run`
        sets one pass over the training records when None).
      batch_size: global batch size, split over the replicas.
      learning_rate: initial rate; multiplied by `lr_decay` at each epoch of `lr_decay_epochs`.
      momentum, nesterov: SGD settings (fb.resnet.torch: 0.9, Nesterov).
      weight_decay: L2 coefficient added to the gradients.
      jit_compile: compile the training step with XLA.
      image_summaries: validation faces drawn with their box in TensorBoard per epoch.
      freeze_batch_norm: the backbone's batch norms keep their statistics and affine and run
        in inference mode (`stages.freeze_batch_norm`): for fine-tuning a network whose
        statistics came from elsewhere, e.g. dlib's imported affines.
      audit_input: each worker writes, per epoch, the paths it trained on and a digest of its
        weights under `<run_dir>/input_audit/` (`Trainer._write_audit`).
      distill_weight: attention and local-head stages: adds this times KL(global || local) per
        face to the local head's cross-entropy (`distillation_loss`): the frozen global head
        teaches the local head where the labels do not pull it away.
    """

    run_dir: str
    stage: str = "global"
    epochs: int = 90
    steps_per_epoch: Optional[int] = None
    batch_size: int = 32
    learning_rate: float = 1e-3
    lr_decay_epochs: Sequence[int] = (30,)
    lr_decay: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 1e-4
    jit_compile: bool = False
    image_summaries: int = 6
    seed: int = 0
    freeze_batch_norm: bool = False
    audit_input: bool = False
    distill_weight: float = 0.0


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


def _digest_ints(text: str, count: int = 4) -> List[int]:
    """`count` 16-bit integers from the SHA-256 of `text` (for `Trainer.agree_across_workers`)."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return [int.from_bytes(digest[2 * i: 2 * i + 2], "big") for i in range(count)]


def is_chief(strategy) -> bool:
    task_type, task_id = worker_task(strategy)
    return task_type == "chief" or (task_type == "worker" and task_id == 0 and not _has_chief(strategy))


def _has_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    return bool(resolver and "chief" in resolver.cluster_spec().as_dict())


def with_weight_decay(gradients, variables, decay: float, optimizer):
    """Torch's L2 weight decay: `decay * w` added to each gradient, in the units the optimizer
    receives. A LossScaleOptimizer gets gradients of the scaled loss and divides them by its
    loss scale, so the decay term is scaled alike (unscaled, it would shrink 2^15-fold)."""
    scale = getattr(optimizer, "dynamic_scale", None)
    factor = tf.constant(decay, tf.float32)
    if scale is not None:
        factor = factor * tf.cast(tf.convert_to_tensor(scale), tf.float32)
    return [g if g is None else g + tf.cast(factor, g.dtype) * tf.cast(v, g.dtype) for g, v in zip(gradients, variables)]


def learning_rate_schedule(config: TrainConfig):
    """The rate of each optimizer step (Keras counts steps from 0): `learning_rate`, multiplied by
    `lr_decay` from the first step of each epoch of `lr_decay_epochs` on (counted from 0, in any
    order): with 60 and 90, epochs 0-59 train at the full rate, 60-89 at a tenth, as Torch's
    MultiStepLR and the paper's schedule have it. Keras' piecewise schedule changes after its
    boundary, so each boundary is that epoch's first step minus one."""
    boundaries = [int(e * config.steps_per_epoch) - 1 for e in sorted(config.lr_decay_epochs)]
    values = [config.learning_rate * config.lr_decay**i for i in range(len(boundaries) + 1)]
    if not boundaries:
        return config.learning_rate
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def learning_rate_at(schedule, step) -> float:
    """The rate a `learning_rate_schedule` result (a schedule or a constant) gives at `step`."""
    rate = schedule(step) if callable(schedule) else schedule
    return float(keras.ops.convert_to_numpy(rate))


# --- metrics computed inside the step -----------------------------------------------------------


def distillation_loss(teacher_probs, student_probs):
    """Per face KL(teacher || student) of two distributions over the same classes; no gradient
    reaches the teacher."""
    teacher = tf.stop_gradient(tf.cast(teacher_probs, tf.float32))
    student = tf.cast(student_probs, tf.float32)
    tiny = keras.backend.epsilon()
    return tf.reduce_sum(teacher * (tf.math.log(teacher + tiny) - tf.math.log(student + tiny)), axis=-1)


# Teachers as soft targets (issue 35): a batch's labels may carry, per face, a distribution over the
# classes from other networks ("teacher_probs") and the weight of its term ("teacher_weight"): the
# stage's loss then adds weight x KL(teacher || the stage's prediction) per face. A per-face weight
# travels with the data (0 where no teacher answered), so no run setting changes.
TEACHER_PROBS = "teacher_probs"
TEACHER_WEIGHT = "teacher_weight"


def soft_targets(ages, class_ages, sigma: float) -> np.ndarray:
    """Each age as a distribution over the classes: a normal of `sigma` years about it, discretised
    at the class ages and normalised ([n, classes]); what an answer of an expected age teaches."""
    ages = np.asarray(ages, np.float64)[:, None]
    classes = np.asarray(class_ages, np.float64)[None, :]
    if not sigma > 0:
        raise ValueError(f"A soft target's sigma must be positive; received {sigma}.")
    logits = -0.5 * ((classes - ages) / sigma) ** 2
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def _batch_sums(outputs, labels, spec, class_ages) -> Dict[str, tf.Tensor]:
    """Sums over a (per-replica) batch, to be all-reduced and divided by the global count."""
    true = tf.cast(labels["label"], tf.int32)
    probs = tf.cast(outputs[spec.loss_output], tf.float32)
    ages = tf.gather(class_ages, true)
    sums = {
        "loss": tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(true, probs)),
        "accuracy": tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, -1, output_type=tf.int32), true), tf.float32)),
        "mae": tf.reduce_sum(tf.abs(tf.linalg.matvec(probs, class_ages) - ages)),
        "combined_mae": tf.reduce_sum(tf.abs(tf.linalg.matvec(tf.cast(outputs["probs"], tf.float32), class_ages) - ages)),
        "count": tf.cast(tf.shape(true)[0], tf.float32),
    }
    return sums


def _means(sums: Dict[str, float]) -> Dict[str, float]:
    count = max(float(sums["count"]), 1.0)
    return {k: float(v) / count for k, v in sums.items() if k != "count"}


# --- the loop ---------------------------------------------------------------------------------------


class Trainer:
    """Builds the model under the strategy, then trains one stage, resuming if it can.

    Args:
      build_model: () -> keras.Model, called inside the strategy's scope; it builds the
        model and loads initial weights.
      class_ages: the age each class stands for.
      config: optimisation settings.
      strategy: a `tf.distribute.Strategy` (see `make_strategy`).
    """

    def __init__(self, build_model: Callable[[], keras.Model], class_ages, config: TrainConfig, strategy=None):
        if not config.steps_per_epoch or config.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be a positive number; received {config.steps_per_epoch}.")
        if config.stage not in stages.STAGES:
            raise ValueError(f"Unknown stage {config.stage!r}; expected one of {stages.STAGES}.")
        self.config = config
        self.strategy = strategy or tf.distribute.get_strategy()
        replicas = self.strategy.num_replicas_in_sync
        if config.batch_size % replicas:
            raise ValueError(f"--batch_size={config.batch_size} must be a multiple of the {replicas} replicas.")
        self.chief = is_chief(self.strategy)
        self.schedule = learning_rate_schedule(config)  # kept: the logged rate is read from it
        keras.utils.set_random_seed(config.seed)
        with self.strategy.scope():
            self.model = build_model()
            if config.jit_compile:
                attention.use_xla_compatible_crop(self.model)
            self.spec = stages.set_training_stage(self.model, config.stage)
            if config.freeze_batch_norm:
                stages.freeze_batch_norm(self.model)
            self.optimizer = keras.optimizers.SGD(
                learning_rate=self.schedule, momentum=config.momentum, nesterov=config.nesterov
            )
            if keras.mixed_precision.global_policy().name == "mixed_float16":
                self.optimizer = keras.optimizers.LossScaleOptimizer(self.optimizer)
            # Built here, in the strategy's scope: variables created lazily inside a
            # replicated tf.function break the step under MirroredStrategy.
            self.optimizer.build(self.model.trainable_variables)
            self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
            self.best_mae = tf.Variable(np.inf, dtype=tf.float64, trainable=False, name="best_mae")
            self.checkpoint = tf.train.Checkpoint(
                model=self.model, optimizer=self.optimizer, epoch=self.epoch, best_mae=self.best_mae
            )
        self.class_ages = tf.constant(np.asarray(class_ages, np.float32))
        self._own_dir = os.path.join(config.run_dir, CHECKPOINTS)
        if self.chief:
            checkpoint_dir = self._own_dir
        else:  # every worker must save (collectives), but only the chief's copy is read
            task_type, task_id = worker_task(self.strategy)
            checkpoint_dir = os.path.join(self._own_dir, f"{task_type}-{task_id}-scratch")
            shutil.rmtree(checkpoint_dir, ignore_errors=True)  # left by a killed run; never read
        self.manager = tf.train.CheckpointManager(self.checkpoint, checkpoint_dir, max_to_keep=2)
        self._train_steps = {}

    # -- steps --

    def _replica_gradients(self, images, labels, global_count):
        """One replica's loss gradients and metric sums; `global_count` is the step's global
        batch (all replicas), which varies in planned epochs, so each face weighs alike. Pure
        computation: XLA compiles it (`jit_compile`), the update stays outside, where a
        distribution strategy can all-reduce the gradients."""
        config, model = self.config, self.model
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            per_example = tf.cast(keras.losses.sparse_categorical_crossentropy(
                tf.cast(labels["label"], tf.int32), outputs[self.spec.loss_output]
            ), tf.float32)
            if config.distill_weight:
                teaching = distillation_loss(outputs["global_probs"], outputs["local_probs"])
                per_example += config.distill_weight * teaching
            if TEACHER_PROBS in labels:  # other networks' answers as soft targets beside the labels
                per_example += tf.cast(labels[TEACHER_WEIGHT], tf.float32) * distillation_loss(
                    labels[TEACHER_PROBS], outputs[self.spec.loss_output])
            loss = tf.reduce_sum(per_example) / global_count
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            scaled = self.optimizer.scale_loss(loss)
        return tape.gradient(scaled, model.trainable_variables), _batch_sums(outputs, labels, self.spec, self.class_ages)

    def make_train_step(self, with_paths: bool = False):
        """The compiled step `fit` runs: (iterator of (images, labels)) -> summed metrics (and the
        batch's paths where `with_paths`). Benchmarks time this same step."""
        gradients_of = (tf.function(self._replica_gradients, jit_compile=True) if self.config.jit_compile
                        else self._replica_gradients)
        variables = self.model.trainable_variables
        decay = self.config.weight_decay / self.strategy.num_replicas_in_sync  # gradients are summed

        def replica_step(images, labels):
            count = tf.cast(tf.shape(labels["label"])[0], tf.float32)
            global_count = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, count)
            # Only numeric labels enter the step: XLA has no string tensors (the image paths).
            gradients, sums = gradients_of(images, {k: v for k, v in labels.items() if v.dtype != tf.string},
                                           global_count)
            gradients = with_weight_decay(gradients, variables, decay, self.optimizer)
            self.optimizer.apply_gradients(zip(gradients, variables))
            return (sums, labels["path"]) if with_paths else (sums, ())

        @tf.function
        def train_step(iterator):
            images, labels = next(iterator)
            sums, paths = self.strategy.run(replica_step, args=(images, labels))
            return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in sums.items()}, paths

        return train_step

    @tf.function
    def _predict(self, images):
        return self.model(images, training=False)

    def evaluate(self, dataset) -> Dict[str, float]:
        """Stage loss, accuracy and MAE (stage head and combined) over a finite dataset."""
        totals: Dict[str, float] = {}
        for images, labels in dataset:
            sums = _batch_sums(self._predict(images), labels, self.spec, self.class_ages)
            for k, v in sums.items():
                totals[k] = totals.get(k, 0.0) + float(v)
        if not totals:
            raise ValueError("The validation data is empty.")
        return _means(totals)

    # -- the run --

    def restore(self) -> int:
        """Restores the newest checkpoint of the run, if any; returns the epoch to start at.

        Only the chief reads its checkpoint; with several workers, the chief's state (weights,
        optimizer, epoch) is then broadcast to every worker, so workers resume together whether
        or not they share the chief's storage."""
        latest = tf.train.latest_checkpoint(self._own_dir) if self.chief else None
        if latest:
            self.checkpoint.restore(latest)
        if worker_count(self.strategy) > 1:
            self._broadcast_from_chief()
        return int(self.epoch.numpy())

    def _state_variables(self) -> list:
        variables = [self.epoch, self.best_mae, *self.model.variables, *self.optimizer.variables]
        return [v.value if isinstance(v, keras.Variable) else v for v in variables]  # -> tf.Variables

    def _broadcast_from_chief(self) -> None:
        """Every worker takes the chief's values of the checkpointed state: an all-reduce sum to
        which only replica 0 (the chief's first) contributes."""
        variables = self._state_variables()

        def replica_values():
            first = tf.equal(tf.distribute.get_replica_context().replica_id_in_sync_group, 0)
            values = [tf.where(first, tf.cast(v, tf.float64), tf.zeros_like(v, tf.float64)) for v in variables]
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, values)

        @tf.function
        def broadcast():
            summed = self.strategy.run(replica_values)
            for variable, value in zip(variables, summed):
                variable.assign(tf.cast(self.strategy.experimental_local_results(value)[0], variable.dtype))

        broadcast()

    def agree_across_workers(self, values: Sequence[int], what: str) -> None:
        """Raises RunMismatch on every worker unless every worker passed the same integers (each
        below 2^20): compared through sums of values and of squares, which are equal-n only when
        all values are equal, so every worker reaches the same verdict and none is left waiting."""
        replicas = self.strategy.num_replicas_in_sync
        local = tf.constant([float(v) for v in values], tf.float64)

        @tf.function
        def sums():
            per_replica = self.strategy.run(lambda: (tf.identity(local), tf.square(local)))
            return [self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for v in per_replica]

        total, squares = (t.numpy() for t in sums())
        if not np.array_equal(total * total, replicas * squares):
            raise provenance.RunMismatch(f"The workers do not agree on {what}.")

    def fit(self, train_input, validation_dataset=None, verbose: int = 1) -> List[dict]:
        """Trains to `config.epochs`, resuming after the last checkpoint; returns the history.

        Args:
          train_input: an endless dataset of global batches (images, labels dict), of which each
            epoch takes `config.steps_per_epoch`; or a `dataset.PlannedEpochs`, of which each
            epoch is one exact pass split over the workers' input pipelines (multi-worker).
          validation_dataset: a finite dataset of centre crops, or None.
        """
        config = self.config
        planned = hasattr(train_input, "plan")
        if planned:
            self.agree_across_workers(_digest_ints(train_input.identity()),
                                      "the training data: every worker must read the same build and fold")
        start = self.restore()
        history = [h for h in read_history(config.run_dir) if h["epoch"] <= start]
        if start >= config.epochs:
            final = os.path.join(config.run_dir, FINAL_MODEL)
            if self.chief and not os.path.exists(final):  # killed between the last checkpoint and the save
                save_model_atomically(self.model, final)
            return history
        if start and verbose and self.chief:
            print(f"resuming after epoch {start}", flush=True)
        if not planned:
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            iterator = iter(self.strategy.experimental_distribute_dataset(train_input.with_options(options)))
        writers = _summary_writers(config.run_dir, validation_dataset is not None) if self.chief else None
        for epoch in range(start, config.epochs):
            started = time.perf_counter()
            steps = config.steps_per_epoch
            if planned:
                iterator, steps = self._planned_iterator(train_input, epoch)
            # a bar only on a terminal; in a log file the epoch's line below says it all
            bar = keras.utils.Progbar(steps, verbose=verbose if self.chief and sys.stdout.isatty() else 0,
                                      stateful_metrics=["loss", "mae"])
            totals: Dict[str, float] = {}
            seen: List[bytes] = []
            train_step = self._train_step(with_paths=config.audit_input)
            for step in range(steps):
                sums, paths = train_step(iterator)
                for k, v in sums.items():
                    totals[k] = totals.get(k, 0.0) + float(v)
                if config.audit_input:
                    seen += [p for t in self.strategy.experimental_local_results(paths) for p in t.numpy()]
                running = _means(totals)
                bar.update(step + 1, [("loss", running["loss"]), ("mae", running["mae"])])
            last_step = int(self.optimizer.iterations.numpy()) - 1
            entry = {"epoch": epoch + 1, "learning_rate": learning_rate_at(self.schedule, last_step),
                     "train_seconds": time.perf_counter() - started}  # the epoch's steps (compiling too, in the first)
            entry |= {f"train_{k}": v for k, v in _means(totals).items()}
            if validation_dataset is not None:
                entry |= {f"val_{k}": v for k, v in self.evaluate(validation_dataset).items()}
            improved = validation_dataset is not None and entry["val_mae"] < float(self.best_mae.numpy())
            if improved:
                self.best_mae.assign(entry["val_mae"])
            if config.audit_input:
                self._write_audit(epoch + 1, seen)
            if self.chief:
                if improved:
                    _save_weights_atomically(self.model, os.path.join(config.run_dir, BEST_WEIGHTS))
                history.append(entry)
                write_history(config.run_dir, history)
                _write_summaries(writers, entry, self, validation_dataset, epoch + 1)
                if verbose:
                    print(" - ".join(f"{k} {v:.4g}" for k, v in entry.items()), flush=True)
            self.epoch.assign(epoch + 1)
            self.manager.save(checkpoint_number=epoch + 1)
        if self.chief:
            save_model_atomically(self.model, os.path.join(config.run_dir, FINAL_MODEL))
        else:
            shutil.rmtree(self.manager.directory, ignore_errors=True)
        return history

    def _train_step(self, with_paths: bool):
        if with_paths not in self._train_steps:
            self._train_steps[with_paths] = self.make_train_step(with_paths)
        return self._train_steps[with_paths]

    def _planned_iterator(self, source, epoch: int):
        """The distributed iterator of one planned epoch and its step count."""
        pipelines = worker_count(self.strategy)
        per_pipeline = self.strategy.num_replicas_in_sync // pipelines
        plan = source.plan(epoch, pipelines, per_pipeline)

        def dataset_fn(context):
            if context.num_input_pipelines != pipelines:
                raise ValueError(f"{context.num_input_pipelines} input pipelines where {pipelines} were planned.")
            return source.dataset(plan, context.input_pipeline_id)

        options = tf.distribute.InputOptions(experimental_fetch_to_device=True)
        distributed = self.strategy.distribute_datasets_from_function(dataset_fn, options)
        return iter(distributed), plan.steps

    def _write_audit(self, epoch: int, paths: List[bytes]) -> None:
        """This worker's record of one epoch: the paths it trained on (one per line) and a digest
        of its weights, which must be the same on every worker."""
        task_type, task_id = worker_task(self.strategy)
        weights = float(sum(np.sum(np.abs(np.asarray(v, np.float64))) for v in self.model.trainable_variables))
        record = {"epoch": epoch, "task": f"{task_type}-{task_id}", "weights_abs_sum": weights,
                  "paths": sorted(p.decode("utf-8") for p in paths)}
        path = os.path.join(self.config.run_dir, AUDIT, f"{task_type}-{task_id}", f"epoch-{epoch:04d}.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        files.write_atomically(path, json.dumps(record))


# --- run files ----------------------------------------------------------------------------------------


def read_history(run_dir: str) -> List[dict]:
    path = os.path.join(run_dir, HISTORY)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_history(run_dir: str, history: List[dict]) -> None:
    """One JSON line per epoch, replaced atomically."""
    text = "".join(json.dumps(entry, sort_keys=True) + "\n" for entry in history)
    files.write_atomically(os.path.join(run_dir, HISTORY), text)


# What a killed save leaves in a run folder: our temporary model and weights files, the atomic
# writer's temporaries, and TensorFlow's half-written checkpoint folders.
LEFTOVERS = (".model-*.keras", "*.partial.weights.h5", ".*.tmp", os.path.join(CHECKPOINTS, "ckpt-*_temp"))


def remove_leftovers(run_dir: str) -> List[str]:
    """Removes what killed saves left in `run_dir` (`LEFTOVERS`); returns them. Only for a folder
    this process holds (`files.folder_lock`): another run's saves in progress look the same."""
    found = sorted(path for pattern in LEFTOVERS for path in glob.glob(os.path.join(run_dir, pattern)))
    for path in found:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.exists(path):
            os.remove(path)
    return found


def save_model_atomically(model, path: str) -> None:
    """`model.save` to a temporary .keras file beside `path`, then a rename: a kill leaves the
    old file or none, never a truncated one that a rerun would take as finished. The model gets
    the 0644 of other outputs; a full disk names `path`."""
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".model-", suffix=".keras")
    os.close(handle)
    try:
        _naming_the_file(lambda: model.save(temporary), path, temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def _save_weights_atomically(model, path: str) -> None:
    temporary = path.replace(".weights.h5", ".partial.weights.h5")
    _naming_the_file(lambda: model.save_weights(temporary), path, temporary)
    os.replace(temporary, path)


def _naming_the_file(save: Callable[[], None], path: str, temporary: str) -> None:
    """Runs `save`; a full disk (or another failed write) is an OSError naming `path`, the file
    the user knows, not the temporary one, nor none (Keras' and h5py's writers wrap it in theirs)."""
    try:
        save()
    except Exception as error:
        code = error.errno if isinstance(error, OSError) else None
        if code is None:  # a writer's own error: a full disk only by its message
            code = next((e for e in (errno.ENOSPC, errno.EDQUOT) if os.strerror(e) in str(error)), None)
            if code is None:
                raise
        elif error.filename not in (None, temporary):
            raise
        raise OSError(code, os.strerror(code), path) from None


def _summary_writers(run_dir: str, validation: bool):
    """TensorBoard's runs: train, and validation only where there is one (a run trained with
    --novalidate listed an empty validation run)."""
    logs = os.path.join(run_dir, "logs")
    names = ("train", "validation") if validation else ("train",)
    return {name: tf.summary.create_file_writer(os.path.join(logs, name)) for name in names}


def _write_summaries(writers, entry: dict, trainer: "Trainer", validation_dataset, step: int) -> None:
    with writers["train"].as_default(step=step):
        for key, value in entry.items():
            if key.startswith("train_"):
                tf.summary.scalar(key[len("train_"):], value)
        tf.summary.scalar("learning_rate", entry["learning_rate"])
    writers["train"].flush()
    if validation_dataset is None:
        return
    with writers["validation"].as_default(step=step):
        for key, value in entry.items():
            if key.startswith("val_"):
                tf.summary.scalar(key[len("val_"):], value)
        if trainer.config.image_summaries:
            images, _ = next(iter(validation_dataset))
            images = images[: trainer.config.image_summaries]
            boxes = trainer._predict(images)["box"]
            tf.summary.image("attention_boxes", draw_boxes(images, boxes), max_outputs=trainer.config.image_summaries)
    writers["validation"].flush()


def draw_boxes(images, boxes):
    """Normalised model inputs -> [0, 1] images with each (x, y, w, h) box drawn in red."""

    pictures = denormalize(images)
    corners = attention.box_to_corners(tf.cast(boxes, tf.float32))[:, None, :]
    return tf.image.draw_bounding_boxes(pictures, corners, tf.constant([[1.0, 0.0, 0.0, 1.0]]))


def steps_per_epoch(records: int, batch_size: int) -> int:
    """Full global batches in one pass over `records` (at least one)."""
    return max(1, math.floor(records / batch_size))
