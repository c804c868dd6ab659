"""The paper's scale on a GPU: AL-ResNet-34 at 224 px, its global stage, under `MirroredStrategy`
over every GPU, with bf16 mixed precision and XLA, on our UTKFace build; one command, a few
minutes (`benchmarks/gpu_paper_scale.py`). Reports images/s, the share of the GPUs' dense bf16
peak, peak device memory, the MAE after its epochs, and whether one training step on the GPU
matches the same step on the CPU. `TINY` runs the same path on a CPU in seconds (the test suite).
"""

import contextlib
import dataclasses
import shutil
import tempfile
from typing import Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from keras_alage.evaluation import metrics, scoring
from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.studies import benchmarking
from keras_alage.training import loop
from alage_pipelines import build, dataset

# Dense bf16 tensor-core peaks (vendor data sheets, without sparsity), matched in the device name.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0, "A10G": 70.0}


@dataclasses.dataclass(frozen=True)
class Settings:
    depth: int = 34
    input_size: int = 224
    batch_per_replica: int = 128
    epochs: int = 3
    max_steps_per_epoch: Optional[int] = None  # None: one pass over the training side
    learning_rate: float = 0.1
    mixed_precision: str = "bfloat16"
    jit_compile: bool = True
    eval_faces: int = 2048


EVAL_BATCH = 64

TINY = Settings(depth=18, input_size=32, batch_per_replica=4, epochs=2, max_steps_per_epoch=2, learning_rate=0.01,
                eval_faces=16)


def device_peak_tflops(names) -> Optional[float]:
    """The summed bf16 peak of the named devices, None where one is not in the table."""
    peaks = [next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None) for name in names]
    return None if not peaks or None in peaks else float(sum(peaks))


def gpu_names():
    return [tf.config.experimental.get_device_details(d).get("device_name", d.name)
            for d in tf.config.list_physical_devices("GPU")]


@contextlib.contextmanager
def dtype_policy(name: Optional[str]):
    """Keras' global dtype policy set to `name` inside the block (None: left as it is), the
    previous one restored after."""
    previous = keras.mixed_precision.global_policy()
    if name:
        keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def step_parity(config: ModelConfig, batch: int = 8, seed: int = 0) -> Dict[str, object]:
    """One float32 SGD step of the global stage from the same weights on the same batch, on the
    GPU and on the CPU: the largest weight difference after it, relative to the largest change
    the step made. Skipped (with why) where no GPU is present."""
    if not tf.config.list_physical_devices("GPU"):
        return {"skipped": "no GPU"}
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(batch, config.input_size, config.input_size, 3)).astype(np.float32)
    labels = rng.integers(0, config.classes().num_classes, batch).astype(np.int32)
    with dtype_policy("float32"):
        keras.utils.set_random_seed(seed)
        start = build_age_model(config).get_weights()
        after = {}
        for device in ("/CPU:0", "/GPU:0"):
            with tf.device(device):
                model = build_age_model(config)
                model.set_weights(start)
                benchmarking.train_step_fn(model, batch, False, "global", batch=(images, labels))()
                after[device] = model.get_weights()
        change = max(float(np.abs(a - s).max()) for a, s in zip(after["/CPU:0"], start))
        difference = max(float(np.abs(a - b).max()) for a, b in zip(after["/CPU:0"], after["/GPU:0"]))
    return {"largest_weight_change": change, "largest_cpu_gpu_difference": difference,
            "relative": difference / max(change, 1e-12)}


def run(data_dir: str, settings: Settings = Settings(), run_dir: Optional[str] = None, strategy=None) -> dict:
    """Trains the global stage on the build's first fold and measures it (see the module doc);
    `strategy`: a `MirroredStrategy` over every GPU (or the CPU) unless given (one per process:
    TensorFlow's collective keys clash when a second is made)."""
    data = build.Build.open(data_dir, verify=True)
    fold = data.folds[0]
    train_files, test_files = data.fold_files(fold, "train"), data.fold_files(fold, "test")
    strategy = strategy or tf.distribute.MirroredStrategy()
    replicas = strategy.num_replicas_in_sync
    batch = settings.batch_per_replica * replicas
    records = data.records(data.sides(fold)["train"])
    steps = max(1, records // batch)
    if settings.max_steps_per_epoch:
        steps = min(steps, settings.max_steps_per_epoch)
    config = ModelConfig(depth=settings.depth, input_size=settings.input_size, age_classes="utkface")
    if config.classes().num_classes != data.num_classes:
        raise ValueError(f"{data_dir} has {data.num_classes} classes; this study trains UTKFace's 101 ages.")
    own_dir = run_dir is None
    run_dir = run_dir or tempfile.mkdtemp(prefix="alage-paper-scale-")
    try:
        with dtype_policy(None if settings.mixed_precision == "off" else f"mixed_{settings.mixed_precision}"):
            train_config = loop.TrainConfig(run_dir, stage="global", epochs=settings.epochs, steps_per_epoch=steps,
                                            batch_size=batch, learning_rate=settings.learning_rate, lr_decay_epochs=(),
                                            jit_compile=settings.jit_compile, image_summaries=0)
            trainer = loop.Trainer(lambda: build_age_model(config), config.classes().values, train_config, strategy)
            train_input = dataset.DatasetConfig(batch, settings.input_size, training=True, repeat=True)
            history = trainer.fit(dataset.make_dataset(train_files, train_input), verbose=0)
            timed = history[1:] or history  # the first epoch compiles
            images_per_second = steps * batch * len(timed) / sum(h["train_seconds"] for h in timed)
            test = dataset.make_dataset(test_files, dataset.DatasetConfig(EVAL_BATCH, settings.input_size, crops="center"))
            predictions = scoring.predict_dataset(trainer.model, test.take(-(-settings.eval_faces // EVAL_BATCH)))
    finally:
        if own_dir:
            shutil.rmtree(run_dir, ignore_errors=True)
    predicted = metrics.expected_age(predictions["global"], config.classes().values)[: settings.eval_faces]
    errors = np.abs(predicted - predictions["age"][: settings.eval_faces])
    flops = benchmarking.forward_flops(build_age_model(config), settings.input_size)
    names = gpu_names()
    peak = device_peak_tflops(names)
    memory = {d.name: tf.config.experimental.get_memory_info(d.name.replace("physical_device:", ""))["peak"]
              for d in tf.config.list_physical_devices("GPU")}
    return {
        "settings": dataclasses.asdict(settings), "devices": names or ["CPU"], "replicas": replicas,
        "global_batch": batch, "steps_per_epoch": steps, "epoch_seconds": [h["train_seconds"] for h in history],
        "images_per_second": images_per_second, "forward_gflops_per_image": flops / 1e9,
        "share_of_bf16_peak": (images_per_second * 3 * flops / (peak * 1e12)) if peak else None,
        "bf16_peak_tflops": peak, "peak_device_memory_gib": {k: v / 2**30 for k, v in memory.items()},
        "peak_host_rss_mib": benchmarking.peak_rss_mib(),
        "train_mae_last_epoch": history[-1]["train_mae"], "test_faces": int(len(errors)),
        "test_mae_global_head": float(errors.mean()), "step_parity": step_parity(config),
    }
