"""One training loop for every distribution strategy: default, mirrored and multi-worker.

A custom loop (`strategy.run` + GradientTape + a Keras optimizer) rather than `model.fit`:
`fit` fails under MultiWorkerMirroredStrategy with TF 2.21 / Keras 3.15 (keras-team/keras
20585), and one loop that behaves the same under all three strategies is easier to trust.
The `Trainer` holds the step and the epochs; its parts live beside it, one job each:
`losses` (the stage's loss, teachers, weight decay, metric sums), `workers` (the strategy,
agreement across workers, the input of each epoch), `run_files` (checkpoints, history, models,
the input audit) and `summaries` (TensorBoard).

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
- Resumable: a checkpoint (model, optimizer, epoch, best MAE) after every epoch; a restarted
  run continues after the last completed epoch, with the chief's state on every worker. Best
  weights (by validation MAE) and the final model are kept.
"""

import dataclasses
import os
import shutil
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_alage.models import attention
from keras_alage.training import losses, run_files, stages, summaries, workers


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
        weights under `<run_dir>/input_audit/` (`run_files.write_audit`).
      distill_weight: attention and local-head stages: adds this times KL(global || local) per
        face to the local head's cross-entropy (`losses.distillation_loss`): the frozen global head
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


class Trainer:
    """Builds the model under the strategy, then trains one stage, resuming if it can.

    Args:
      build_model: () -> keras.Model, called inside the strategy's scope; it builds the
        model and loads initial weights.
      class_ages: the age each class stands for.
      config: optimisation settings.
      strategy: a `tf.distribute.Strategy` (see `workers.make_strategy`).
    """

    def __init__(self, build_model: Callable[[], keras.Model], class_ages, config: TrainConfig, strategy=None):
        self.config = config
        self.strategy = strategy or tf.distribute.get_strategy()
        _check(config, self.strategy.num_replicas_in_sync)
        self.chief = workers.is_chief(self.strategy)
        task_type, task_id = workers.worker_task(self.strategy)
        self.task = f"{task_type}-{task_id}"
        self.schedule = learning_rate_schedule(config)  # kept: the logged rate is read from it
        keras.utils.set_random_seed(config.seed)
        with self.strategy.scope():
            self._build(build_model)
        self.class_ages = tf.constant(np.asarray(class_ages, np.float32))
        # every worker must save (collectives), but only the chief's copy is read
        folder = run_files.checkpoint_folder(config.run_dir, None if self.chief else self.task)
        self.manager = tf.train.CheckpointManager(self.checkpoint, folder, max_to_keep=2)
        self._train_steps = {}

    def _build(self, build_model: Callable[[], keras.Model]) -> None:
        """The model in its stage, the optimizer and the checkpointed state, in the strategy's scope."""
        config = self.config
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

    # -- steps --

    def _replica_gradients(self, images, labels, global_count):
        """One replica's loss gradients and metric sums; `global_count` is the step's global
        batch (all replicas), which varies in planned epochs, so each face weighs alike. Pure
        computation: XLA compiles it (`jit_compile`), the update stays outside, where a
        distribution strategy can all-reduce the gradients."""
        model = self.model
        with tf.GradientTape() as tape:
            outputs = model(images, training=True)
            loss = losses.stage_loss(outputs, labels, self.spec, self.config.distill_weight, global_count,
                                     model.losses)
            scaled = self.optimizer.scale_loss(loss)
        gradients = tape.gradient(scaled, model.trainable_variables)
        return gradients, losses.batch_sums(outputs, labels, self.spec, self.class_ages)

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
            gradients = losses.with_weight_decay(gradients, variables, decay, self.optimizer)
            self.optimizer.apply_gradients(zip(gradients, variables))
            return (sums, labels["path"]) if with_paths else (sums, ())

        @tf.function
        def train_step(iterator):
            images, labels = next(iterator)
            sums, paths = self.strategy.run(replica_step, args=(images, labels))
            return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in sums.items()}, paths

        return train_step

    def _train_step(self, with_paths: bool):
        if with_paths not in self._train_steps:
            self._train_steps[with_paths] = self.make_train_step(with_paths)
        return self._train_steps[with_paths]

    @tf.function
    def predict(self, images):
        """The model's outputs in inference mode (compiled)."""
        return self.model(images, training=False)

    def evaluate(self, dataset) -> Dict[str, float]:
        """Stage loss, accuracy and MAE (stage head and combined) over a finite dataset."""
        totals: Dict[str, float] = {}
        for images, labels in dataset:
            losses.add_sums(totals, losses.batch_sums(self.predict(images), labels, self.spec, self.class_ages))
        if not totals:
            raise ValueError("The validation data is empty.")
        return losses.means(totals)

    # -- the run --

    def restore(self) -> int:
        """Restores the newest checkpoint of the run, if any; returns the epoch to start at.

        Only the chief reads its checkpoint; with several workers, the chief's state (weights,
        optimizer, epoch) is then broadcast to every worker, so workers resume together whether
        or not they share the chief's storage."""
        latest = tf.train.latest_checkpoint(run_files.checkpoint_folder(self.config.run_dir)) if self.chief else None
        if latest:
            self.checkpoint.restore(latest)
        if workers.worker_count(self.strategy) > 1:
            workers.broadcast_from_chief(self.strategy, self._state_variables())
        return int(self.epoch.numpy())

    def _state_variables(self) -> list:
        variables = [self.epoch, self.best_mae, *self.model.variables, *self.optimizer.variables]
        return [v.value if isinstance(v, keras.Variable) else v for v in variables]  # -> tf.Variables

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
            workers.agree_across_workers(self.strategy, workers.digest_ints(train_input.identity()),
                                         "the training data: every worker must read the same build and fold")
        start = self.restore()
        history = [h for h in run_files.read_history(config.run_dir) if h["epoch"] <= start]
        if start >= config.epochs:
            self._save_final_model_if_lost()
            return history
        if start and verbose and self.chief:
            print(f"resuming after epoch {start}", flush=True)
        iterator = None if planned else workers.endless_iterator(self.strategy, train_input)
        writers = summaries.summary_writers(config.run_dir, validation_dataset is not None) if self.chief else None
        for epoch in range(start, config.epochs):
            started = time.perf_counter()
            steps = config.steps_per_epoch
            if planned:
                iterator, steps = workers.planned_iterator(self.strategy, train_input, epoch)
            totals, seen = self._train_epoch(iterator, steps, verbose)
            entry = self._epoch_entry(epoch, started, totals, validation_dataset)
            self._end_epoch(entry, seen, history, writers, validation_dataset, verbose)
        self._finish()
        return history

    def _train_epoch(self, iterator, steps: int, verbose: int):
        """`steps` training steps; returns the summed metrics and (auditing) the paths trained on."""
        audit = self.config.audit_input
        # a bar only on a terminal; in a log file the epoch's line says it all
        bar = keras.utils.Progbar(steps, verbose=verbose if self.chief and sys.stdout.isatty() else 0,
                                  stateful_metrics=["loss", "mae"])
        totals: Dict[str, float] = {}
        seen: List[bytes] = []
        train_step = self._train_step(with_paths=audit)
        for step in range(steps):
            sums, paths = train_step(iterator)
            losses.add_sums(totals, sums)
            if audit:
                seen += [p for t in self.strategy.experimental_local_results(paths) for p in t.numpy()]
            running = losses.means(totals)
            bar.update(step + 1, [("loss", running["loss"]), ("mae", running["mae"])])
        return totals, seen

    def _epoch_entry(self, epoch: int, started: float, totals: Dict[str, float], validation_dataset) -> dict:
        """The epoch's history entry: rate, time, training metrics and validation metrics."""
        last_step = int(self.optimizer.iterations.numpy()) - 1
        entry = {"epoch": epoch + 1, "learning_rate": learning_rate_at(self.schedule, last_step),
                 "train_seconds": time.perf_counter() - started}  # the epoch's steps (compiling too, in the first)
        entry |= {f"train_{k}": v for k, v in losses.means(totals).items()}
        if validation_dataset is not None:
            entry |= {f"val_{k}": v for k, v in self.evaluate(validation_dataset).items()}
        return entry

    def _end_epoch(self, entry: dict, seen: List[bytes], history: List[dict], writers, validation_dataset,
                   verbose: int) -> None:
        """The best weights, the input audit, history, TensorBoard and the epoch's checkpoint."""
        epoch = entry["epoch"]
        improved = validation_dataset is not None and entry["val_mae"] < float(self.best_mae.numpy())
        if improved:
            self.best_mae.assign(entry["val_mae"])
        if self.config.audit_input:
            run_files.write_audit(self.config.run_dir, self.task, epoch, self.model, seen)
        if self.chief:
            if improved:
                run_files.save_weights_atomically(self.model, os.path.join(self.config.run_dir, run_files.BEST_WEIGHTS))
            history.append(entry)
            run_files.write_history(self.config.run_dir, history)
            summaries.write_summaries(writers, entry, epoch, validation_dataset, self.predict,
                                      self.config.image_summaries)
            if verbose:
                print(" - ".join(f"{k} {v:.4g}" for k, v in entry.items()), flush=True)
        self.epoch.assign(epoch)
        self.manager.save(checkpoint_number=epoch)

    def _finish(self) -> None:
        """The chief saves the final model; other workers remove their scratch checkpoints."""
        if self.chief:
            run_files.save_model_atomically(self.model, os.path.join(self.config.run_dir, run_files.FINAL_MODEL))
        else:
            shutil.rmtree(self.manager.directory, ignore_errors=True)

    def _save_final_model_if_lost(self) -> None:
        """A finished run killed between its last checkpoint and its final save saves it now."""
        final = os.path.join(self.config.run_dir, run_files.FINAL_MODEL)
        if self.chief and not os.path.exists(final):
            run_files.save_model_atomically(self.model, final)


def _check(config: TrainConfig, replicas: int) -> None:
    """Refuses settings the trainer cannot run, saying what it received."""
    if not config.steps_per_epoch or config.steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive number; received {config.steps_per_epoch}.")
    if config.stage not in stages.STAGES:
        raise ValueError(f"Unknown stage {config.stage!r}; expected one of {stages.STAGES}.")
    if config.batch_size % replicas:
        raise ValueError(f"--batch_size={config.batch_size} must be a multiple of the {replicas} replicas.")
