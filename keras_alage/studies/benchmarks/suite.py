"""The benchmark suite's measurements (`benchmarks/suite.py`): speed and memory of AL-ResNet training
and serving, as same-run ratios.

One table: the machine's matmul peak (TF and numpy, measured now), the model's counted FLOPs,
training images/s with and without XLA as a fraction of that peak (training counted as 3x the
forward FLOPs), the attention branch's cost against the global-only network, serving latency and
throughput of the exported SavedModel against the Keras model, ten-crop against centre crop, the
tf.data pipeline's rate against the training step's, peak memory, and where the training step's
time goes by op type (TF profiler).
"""

import os
import tempfile
from typing import Callable, Optional

import cv2
import keras
import numpy as np
import tensorflow as tf

from keras_alage.models import age_model, attention, batch_norm
from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.serving import export
from keras_alage.studies import benchmarking
from keras_alage.training import stages
from alage_pipelines import dataset, faces, tfrecords
from alage_pipelines.records import AgeRecord


def _face_records(folder: str, count: int) -> list:
    """TFRecord shards of `count` synthetic 256 px face-crop JPEGs (the build's format)."""
    rng = np.random.default_rng(0)
    paths = [os.path.join(folder, f"bench-{i}.tfrecord") for i in range(2)]
    writers = [tf.io.TFRecordWriter(p) for p in paths]
    for i in range(count):
        image = cv2.resize(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), (256, 256))
        record = AgeRecord(f"synthetic{i}", 30.0, 30)
        writers[i % 2].write(tfrecords.encode_example(record, faces.encode_jpeg(image)))
    for writer in writers:
        writer.close()
    return paths


class Table:
    """The suite's results, and its rows said as each is measured, one section at a time."""

    def __init__(self, results: dict, say: Callable[[str], None]):
        self.results, self.say = results, say

    def row(self, name, value, note=""):
        self.say(f"{name:58s} {value:>14s}  {note}")

    def matmul_peak(self):
        peak = benchmarking.matmul_peak()
        self.results["matmul_gflops"] = peak
        self.row("matmul 4096^2 fp32, TF / numpy (GFLOP/s)", f"{peak['tf']:.0f} / {peak['numpy']:.0f}", "the peak below is the best")
        return max(peak.values())

    def model(self, depth, size, mixed_precision):
        if mixed_precision != "off":  # FLOPs are counted on the same graph either way
            keras.mixed_precision.set_global_policy(f"mixed_{mixed_precision}")
        model = build_age_model(ModelConfig(depth=depth, input_size=size))
        attention.freeze_attention_state(model)
        stages.set_training_stage(model, "global")  # what the global stage trains
        global_only = benchmarking.global_only_model(model)
        flops = benchmarking.forward_flops(model, size)
        flops_global = benchmarking.forward_flops(global_only, size)
        self.results |= {"forward_gflops": flops / 1e9, "forward_gflops_global_only": flops_global / 1e9}
        self.row("forward FLOPs per image, counted (GFLOP)", f"{flops / 1e9:.3f}", f"global-only {flops_global / 1e9:.3f}")
        return model, global_only, flops

    def training(self, model, batch, size, steps, flops, best_peak, xla, profile, profile_top):
        train = benchmarking.train_rate(model, batch, steps)
        self.results["train_images_per_s"] = train.images_per_second
        self.results["train_fraction_of_peak"] = benchmarking.fraction_of_peak(train.images_per_second, flops, best_peak)
        self.results["peak_rss_mib_after_training"] = benchmarking.peak_rss_mib()
        self.row(f"training, batch {batch} at {size} px (images/s)", f"{train.images_per_second:.2f}",
            f"{100 * self.results['train_fraction_of_peak']:.1f}% of the matmul peak")
        self.row("peak resident memory after training (MiB)", f"{self.results['peak_rss_mib_after_training']:.0f}")
        if profile:
            step = benchmarking.train_step_fn(model, batch)
            step()
            with tempfile.TemporaryDirectory() as logdir:
                op_times = benchmarking.op_time_profile(lambda: [step() for _ in range(steps)], logdir)
            total = sum(op_times.values())
            self.results["training_op_time_share"] = {k: v / total for k, v in op_times.items()}
            for kind, micros in list(op_times.items())[:profile_top]:
                self.row(f"  profile: {kind}", f"{100 * micros / total:.1f}%", "of the training step's op time")
        if xla:
            attention.use_xla_compatible_crop(model)
            compiled = benchmarking.train_rate(model, batch, steps, jit_compile=True)
            attention.use_xla_compatible_crop(model, False)
            self.results["train_xla_images_per_s"] = compiled.images_per_second
            self.row("training with XLA (images/s)", f"{compiled.images_per_second:.2f}",
                f"{compiled.images_per_second / train.images_per_second:.2f}x without; "
                f"{100 * benchmarking.fraction_of_peak(compiled.images_per_second, flops, best_peak):.1f}% of peak")
        return train

    def costs_and_inference(self, model, global_only, batch, size, steps, flops, best_peak, batch_norm_reference):
        if batch_norm_reference:
            reference = batch_norm.with_keras_batch_norm(model)
            stages.set_training_stage(reference, "global")
            self.results["keras_batch_norm_train_overhead"] = benchmarking.paired_overhead(
                benchmarking.train_step_fn(reference, batch), benchmarking.train_step_fn(model, batch))
            self.row("training step with Keras BatchNormalization / fused - 1", f"{100 * self.results['keras_batch_norm_train_overhead']:.1f}%",
                "median of 5 alternating step pairs")
            del reference
        self.results["attention_train_overhead"] = benchmarking.paired_overhead(
            benchmarking.train_step_fn(model, batch),
            benchmarking.train_step_fn(global_only, batch, class_ages=age_model.class_ages_of(model)))
        self.row("attention branch cost in training (full / global-only - 1)", f"{100 * self.results['attention_train_overhead']:.1f}%",
            "median of 5 alternating step pairs")
        infer = benchmarking.inference_rate(model, batch, steps)
        self.results["inference_images_per_s"] = infer.images_per_second
        self.results["inference_fraction_of_peak"] = benchmarking.fraction_of_peak(infer.images_per_second, flops, best_peak, 1.0)
        batch_images = tf.constant(np.zeros((batch, size, size, 3), np.float32))
        full_predict = tf.function(lambda x: model(x, training=False)["age"])
        base_predict = tf.function(lambda x: global_only(x, training=False)["global_probs"])
        self.results["attention_inference_overhead"] = benchmarking.paired_overhead(
            lambda: full_predict(batch_images).numpy(), lambda: base_predict(batch_images).numpy(), rounds=9)
        self.row(f"inference, batch {batch} (images/s)", f"{infer.images_per_second:.2f}",
            f"{100 * self.results['inference_fraction_of_peak']:.1f}% of the matmul peak")
        self.row("attention branch cost in inference", f"{100 * self.results['attention_inference_overhead']:.1f}%")

    def input_and_serving(self, model, batch, size, train, latency_calls):
        with tempfile.TemporaryDirectory() as folder:
            shards = _face_records(folder, max(4 * batch, 64))
            data = dataset.make_dataset(shards, dataset.DatasetConfig(batch, size, training=True, repeat=True,
                                                                 shuffle_buffer=256))
            pipeline = benchmarking.pipeline_rate(data, 8)
            self.results["pipeline_images_per_s"] = pipeline
            self.row("tf.data training pipeline (images/s)", f"{pipeline:.1f}",
                f"{pipeline / train.images_per_second:.1f}x the training step: "
                + ("not input-bound" if pipeline > train.images_per_second else "INPUT-BOUND"))

            crop = faces.encode_jpeg(cv2.resize(np.full((8, 8, 3), 128, np.uint8), (256, 256)))
            one = tf.constant(np.zeros((1, size, size, 3), np.float32))
            many = tf.constant(np.zeros((32, size, size, 3), np.float32))
            keras_one = benchmarking.latencies(lambda: model(one, training=False)["age"].numpy(), latency_calls)
            keras_predict = benchmarking.latencies(lambda: model.predict(one, verbose=0)["age"], latency_calls)
            for crops in ("center", "ten"):
                path = export.export_saved_model(model, folder, f"age_{crops}", 1, crops=crops)
                loaded = tf.saved_model.load(path)
                encoded = loaded.signatures["serving_default"]
                pre = loaded.signatures["predict_preprocessed"]
                encoded_one = benchmarking.latencies(lambda: encoded(images=tf.constant([crop]))["age"].numpy(),
                                                     latency_calls)
                self.results[f"serving_{crops}_encoded_one"] = encoded_one
                self.row(f"SavedModel serving_default, 1 encoded crop, {crops} (ms p50/p99)",
                    f"{encoded_one['p50_ms']:.1f} / {encoded_one['p99_ms']:.1f}")
                if crops == "center":
                    pre_one = benchmarking.latencies(lambda: pre(images=one)["age"].numpy(), latency_calls)
                    pre_many = benchmarking.latencies(lambda: pre(images=many)["age"].numpy(), 5, warmup=1)
                    keras_many = benchmarking.latencies(lambda: model(many, training=False)["age"].numpy(), 5, warmup=1)
                    self.results |= {"serving_preprocessed_one": pre_one, "keras_call_one": keras_one,
                                "keras_predict_one": keras_predict,
                                "serving_batch32_images_per_s": 32000.0 / pre_many["mean_ms"],
                                "keras_batch32_images_per_s": 32000.0 / keras_many["mean_ms"]}
                    self.row("SavedModel predict_preprocessed, 1 image (ms p50/p99)",
                        f"{pre_one['p50_ms']:.1f} / {pre_one['p99_ms']:.1f}",
                        f"Keras model(x) {keras_one['p50_ms']:.1f} / {keras_one['p99_ms']:.1f}; "
                        f"model.predict {keras_predict['p50_ms']:.1f} / {keras_predict['p99_ms']:.1f}")
                    self.row("batch of 32: SavedModel / Keras model(x) (images/s)",
                        f"{self.results['serving_batch32_images_per_s']:.1f} / {self.results['keras_batch32_images_per_s']:.1f}")
            ratio = self.results["serving_ten_encoded_one"]["p50_ms"] / self.results["serving_center_encoded_one"]["p50_ms"]
            self.results["ten_over_center_latency"] = ratio
            self.row("ten-crop / centre-crop single-request latency", f"{ratio:.1f}x")


def run_suite(full: bool = False, input_size: Optional[int] = None, batch_size: Optional[int] = None, depth: int = 34,
              steps: int = 3, latency_calls: int = 30, xla: bool = True, mixed_precision: str = "off",
              intra_op_threads: int = 0, inter_op_threads: int = 0, profile: bool = True, profile_top: int = 10,
              batch_norm_reference: bool = True, say: Callable[[str], None] = print) -> dict:
    """Measures everything the suite's table shows (each row said through `say` as it is measured)
    and returns the results: `full` is the paper's setting (224 px, batch 32) where `input_size` and
    `batch_size` are not given (else 112 px, batch 16); `steps` training steps per timing (best of
    three); `latency_calls` single-image requests per serving path; `xla`, `profile` (the top
    `profile_top` op types) and `batch_norm_reference` add their rows."""
    tf.get_logger().setLevel("ERROR")
    tf.config.threading.set_intra_op_parallelism_threads(intra_op_threads)
    tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads)
    size = input_size or (224 if full else 112)
    batch = batch_size or (32 if full else 16)
    results = {"input_size": size, "batch_size": batch, "depth": depth,
               "mixed_precision": mixed_precision, "intra_op_threads": intra_op_threads,
               "inter_op_threads": inter_op_threads,
               "tensorflow": tf.__version__, "cpus": os.cpu_count()}

    table = Table(results, say)
    peak = table.matmul_peak()
    model, global_only, flops = table.model(depth, size, mixed_precision)
    train = table.training(model, batch, size, steps, flops, peak, xla, profile, profile_top)
    table.costs_and_inference(model, global_only, batch, size, steps, flops, peak, batch_norm_reference)
    table.input_and_serving(model, batch, size, train, latency_calls)
    return results
