"""Measurements for the benchmark suite: machine peak, counted FLOPs, training and serving speed.

Every speed is reported next to a reference measured in the same process (the machine's
matmul peak, the global-only network, the Keras model), because absolute rates on a shared
machine swing by a factor of two between runs while same-run ratios hold.
"""

import dataclasses
import os
import resource
import shutil
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence

import cv2
import keras
import numpy as np
import tensorflow as tf

from keras_alage.models import age_model
from keras_alage.serving import photos, precision, video
from keras_alage.training import loop
from alage_pipelines import files, images


def _timings(run: Callable[[], object], repeats: int, warmup: int) -> np.ndarray:
    """Wall seconds of `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return np.asarray(times)


def _best_seconds(run: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    return float(_timings(run, repeats, warmup).min())


def matmul_peak(size: int = 4096, repeats: int = 5) -> Dict[str, float]:
    """GFLOP/s of a float32 size x size matmul with TensorFlow and with numpy's BLAS."""
    flops = 2.0 * size**3
    a = np.random.default_rng(0).normal(size=(size, size)).astype(np.float32)
    b = np.random.default_rng(1).normal(size=(size, size)).astype(np.float32)
    ta, tb = tf.constant(a), tf.constant(b)
    tf_seconds = _best_seconds(lambda: tf.matmul(ta, tb).numpy(), repeats)
    np_seconds = _best_seconds(lambda: a @ b, repeats)
    return {"tf": flops / tf_seconds / 1e9, "numpy": flops / np_seconds / 1e9}


def forward_flops(model: keras.Model, input_size: int) -> int:
    """Floating-point operations of one image's inference, counted by the TF profiler on the
    frozen graph (a multiply-add counts 2)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    function = tf.function(lambda x: model(x, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec([1, input_size, input_size, 3], tf.float32))
    graph = convert_variables_to_constants_v2(concrete).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op", options=options)
    return int(profile.total_float_ops)


def global_only_model(model: keras.Model) -> keras.Model:
    """The same backbone and global head without the attention branch (shared weights); its
    combined answer is its global one."""
    probs = model.get_layer("global_head").output
    return keras.Model(model.input, {"global_probs": probs, "probs": probs}, name="global_only")


@dataclasses.dataclass
class Rate:
    images_per_second: float
    seconds_per_step: float


def train_rate(model: keras.Model, batch_size: int, steps: int, jit_compile: bool = False,
               stage: str = "global", repeats: int = 3) -> Rate:
    """Training images/s of one SGD step (forward, backward, update) on a fixed batch in memory."""
    step = train_step_fn(model, batch_size, jit_compile, stage)

    def run():
        for _ in range(steps):
            step()

    seconds = _best_seconds(run, repeats) / steps
    return Rate(batch_size / seconds, seconds)


def paired_overhead(run_full: Callable[[], object], run_base: Callable[[], object], rounds: int = 5) -> float:
    """full / base - 1 from alternating timings (ABAB...), the median of the per-round ratios,
    so that the machine's drift hits both sides alike."""
    run_full(), run_base()
    ratios = []
    for _ in range(rounds):
        start = time.perf_counter()
        run_full()
        middle = time.perf_counter()
        run_base()
        ratios.append((middle - start) / (time.perf_counter() - middle))
    return float(np.median(ratios)) - 1.0


def train_step_fn(model: keras.Model, batch_size: int, jit_compile: bool = False,
                  stage: str = "global", class_ages=None, batch=None) -> Callable[[], float]:
    """The trainer's own compiled step (`loop.Trainer.make_train_step`: the stage's loss, weight
    decay, SGD with Nesterov momentum) on a fixed in-memory batch, as a callable returning the
    batch's summed loss. The model is set to `stage` (its trainable variables) as training sets it;
    `class_ages`: the model's own (`age_model.class_ages_of`) unless given (a global-only model);
    `batch`: (images, class labels) to step on, else random ones."""
    size = int(model.input_shape[1])
    rng = np.random.default_rng(0)
    images, classes = batch if batch is not None else (
        rng.normal(size=(batch_size, size, size, 3)).astype(np.float32), rng.integers(0, 2, size=batch_size))
    images = tf.constant(images)
    labels = {"label": tf.constant(np.asarray(classes, np.int32)), "path": tf.constant([b"benchmark"] * batch_size)}
    run_dir = tempfile.mkdtemp(prefix="alage-benchmark-")  # the trainer's checkpoint folder; never written
    config = loop.TrainConfig(run_dir, stage=stage, epochs=1, steps_per_epoch=1, batch_size=batch_size,
                              learning_rate=0.001, image_summaries=0, jit_compile=jit_compile)
    class_ages = age_model.class_ages_of(model) if class_ages is None else class_ages
    try:
        trainer = loop.Trainer(lambda: model, class_ages, config)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    batches = iter(tf.data.Dataset.from_tensors((images, labels)).repeat())
    step = trainer.make_train_step()

    def run() -> float:
        sums, _ = step(batches)
        return float(sums["loss"])

    return run


def inference_rate(model: keras.Model, batch_size: int, steps: int, repeats: int = 3) -> Rate:
    size = int(model.input_shape[1])
    images = tf.constant(np.random.default_rng(0).normal(size=(batch_size, size, size, 3)).astype(np.float32))
    predict = tf.function(lambda x: model(x, training=False))

    def run():
        for _ in range(steps):
            outputs = predict(images)
        return tf.nest.map_structure(lambda t: t.numpy(), outputs)

    seconds = _best_seconds(run, repeats) / steps
    return Rate(batch_size / seconds, seconds)


def latencies(call: Callable[[], object], count: int, warmup: int = 3) -> Dict[str, float]:
    """p50 / p99 / mean wall time in milliseconds of `count` calls after `warmup` calls."""
    times = _timings(call, count, warmup) * 1000.0
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
            "mean_ms": float(times.mean())}


def pipeline_rate(dataset, batches: int) -> float:
    """Images/s the input pipeline delivers (after one warm-up batch)."""
    iterator = iter(dataset)
    next(iterator)
    count, start = 0, time.perf_counter()
    for _ in range(batches):
        images, _ = next(iterator)
        count += int(images.shape[0])
    return count / (time.perf_counter() - start)


KERNEL_PREFIXES = ("_MklNative", "_Mkl")


def canonical_op_type(kind: str) -> str:
    """The op type without the kernel library's prefix: oneDNN's `_MklNativeConv2D` is `Conv2D`,
    so a profile reads the same whichever kernel TensorFlow picked."""
    for prefix in KERNEL_PREFIXES:
        if kind.startswith(prefix):
            return kind[len(prefix):]
    return kind


def op_time_profile(run: Callable[[], object], logdir: str, repeats: int = 1) -> Dict[str, float]:
    """Where the time of `run` goes: TF profiler self-time in microseconds per op type
    (Conv2D, Conv2DBackpropFilter, FusedBatchNormV3, ...; `canonical_op_type`), largest first,
    idle time left out.

    `run` should be warmed up (traced) before; it runs `repeats` times in one trace (a busy
    machine can leave a single short call's ops out of the trace). The trace stays in `logdir`.
    """
    import glob
    import json

    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

    tf.profiler.experimental.start(logdir)
    try:
        for _ in range(repeats):
            run()
    finally:
        tf.profiler.experimental.stop()
    planes = sorted(glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")))
    if not planes:
        raise RuntimeError(f"The profiler wrote no trace under {logdir}.")
    data, ok = _pywrap_profiler_plugin.xspace_to_tools_data(planes[-1:], "framework_op_stats", {})
    if not ok:
        raise RuntimeError(f"Could not read the op statistics of {planes[-1]}.")
    table = json.loads(data)[0]
    columns = [c["id"] for c in table["cols"]]
    kind, self_time = columns.index("type"), columns.index("total_self_time")
    totals: Dict[str, float] = {}
    for row in table["rows"]:
        cells = [c.get("v") for c in row["c"]]
        if cells[kind] != "IDLE":
            name = canonical_op_type(cells[kind])
            totals[name] = totals.get(name, 0.0) + float(cells[self_time])
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def peak_rss_mib() -> float:
    """Peak resident set of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def fraction_of_peak(images_per_second: float, flops_per_image: float, peak_gflops: float,
                     factor: float = 3.0) -> float:
    """Achieved FLOP rate (training counts `factor` x the forward FLOPs) over the peak."""
    return images_per_second * flops_per_image * factor / (peak_gflops * 1e9)


# --- the face path: photos and video, today's path beside the new one ----------------------------------


@dataclasses.dataclass(frozen=True)
class FacePathSetting:
    """One way through the face path: the detector (`faces.DETECTORS`; predict.py's MTCNN fallback
    behind it), the decode (`photos.DECODES`), the AL member's crops (None: the release's) and the
    networks' arithmetic (`precision`: settings of either precision alternate in one process)."""

    detector: str
    decode: str
    crops: Optional[str] = None
    precision: str = "float32"

    def label(self) -> str:
        label = f"{self.detector}, {self.decode} decode, {self.crops or 'recorded'} crops"
        return label if self.precision == "float32" else f"{label}, {self.precision}"


# Before issue 36 (dlib's HOG on the full decode, v5's ten shift_flip crops), the default after it
# (BlazeFace on a reduced decode, the release's recorded crops: v5.1's one centre crop), and the new
# path with v5's ten crops.
TODAY = FacePathSetting("dlib", "full", "shift_flip")
NEW = FacePathSetting("blazeface", "scaled")
NEW_TEN = FacePathSetting("blazeface", "scaled", "shift_flip")


def big_photos(sources: Sequence[str], folder: str, size=(4000, 3000), quality: int = 92) -> List[str]:
    """Camera-size JPEGs made from `sources`: each photo enlarged to 80 % of the height on a canvas of
    itself blurred and dimmed, with a little noise (a camera's photo is not a flat enlargement)."""
    width, height = size
    rng = np.random.default_rng(0)
    made = []
    for path in sources:
        photo = images.read_image(path)
        scale = 0.8 * height / photo.shape[0]
        face = cv2.resize(photo, (int(photo.shape[1] * scale), int(photo.shape[0] * scale)),
                          interpolation=cv2.INTER_CUBIC)[:height, :width]
        canvas = cv2.resize(photo, (width, height), interpolation=cv2.INTER_LINEAR) // 2 + 60
        y, x = (height - face.shape[0]) // 2, (width - face.shape[1]) // 2
        canvas[y:y + face.shape[0], x:x + face.shape[1]] = face
        canvas = np.clip(canvas + rng.normal(0.0, 4.0, canvas.shape), 0, 255).astype(np.uint8)
        target = os.path.join(folder, os.path.splitext(os.path.basename(path))[0] + ".jpg")
        cv2.imwrite(target, cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        made.append(target)
    return made


def panning_clip(sources: Sequence[str], path: str, frames: int, size=(640, 480), per_photo: int = 25,
                 zoom_step: float = 0.01) -> str:
    """A clip panning and zooming (in by `zoom_step` of the photo a frame) over photos, `per_photo`
    frames each."""
    width, height = size
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25.0, size)
    for i in range(frames):
        photo = images.read_image(sources[(i // per_photo) % len(sources)])
        h, w = photo.shape[:2]
        zoom = 1.0 - zoom_step * (i % per_photo)
        cw, ch = max(8, int(w * zoom)), max(6, int(min(h, w * height / width) * zoom))
        x, y = int((w - cw) * (i % per_photo) / max(1, per_photo - 1)), max(0, (h - ch) // 2)
        writer.write(cv2.cvtColor(cv2.resize(photo[y:y + ch, x:x + cw], size), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def _open_setting(model_path: str, setting: FacePathSetting, predictors: dict):
    if setting.crops not in predictors:
        predictors[setting.crops] = photos.load_predictor(model_path, setting.crops)
    predict = predictors[setting.crops]
    spec = photos.face_crop_for(predict, detector=setting.detector)
    return photos.Answerer(predict, photos.photo_detector(spec), spec)


def face_path_rates(model_path: str, workloads: Dict[str, Sequence[str]], clip: Optional[str],
                    settings: Sequence[FacePathSetting] = (TODAY, NEW_TEN, NEW), rounds: int = 2,
                    batch_faces: int = 32, log=print) -> dict:
    """Photos/s of each setting on each workload (`photos.answer_photos`, the path `alage predict`
    takes) and frames/s on `clip` (`video.answer_video`), all in this one process, the settings
    alternating over `rounds` (the best round kept), after one untimed warm-up photo each. The
    ratios to the first setting are what to read: the machine's speed drifts, same-run ratios hold.
    Each setting's answers are kept (the age of each photo's most confident face) to compare."""
    predictors: dict = {}
    opened = [_open_setting(model_path, s, predictors) for s in settings]
    first = next(iter(workloads.values()))[:1]
    for answerer, setting in zip(opened, settings):
        with precision.using(setting.precision):  # each precision's first call optimizes the graph anew
            list(photos.answer_photos(first, answerer, decode=setting.decode))
    report = {"model": files.portable_path(model_path), "settings": [s.label() for s in settings], "workloads": {}}
    for name, paths in workloads.items():
        best = [float("inf")] * len(settings)
        ages: List[Dict[str, float]] = [{} for _ in settings]
        for _ in range(rounds):
            for i, (answerer, setting) in enumerate(zip(opened, settings)):
                with precision.using(setting.precision):
                    started = time.perf_counter()
                    for result in photos.answer_photos(paths, dataclasses.replace(answerer, batch_faces=batch_faces),
                                                       decode=setting.decode):
                        answered = [f for f in result.faces if f.error is None]
                        if answered:
                            ages[i][result.path] = max(answered, key=lambda f: f.confidence).age
                    best[i] = min(best[i], time.perf_counter() - started)
        rows = []
        for i, setting in enumerate(settings):
            common = [p for p in paths if p in ages[0] and p in ages[i]]
            rows.append({"setting": setting.label(), "photos": len(paths), "answered": len(ages[i]),
                         "photos_per_second": len(paths) / best[i], "ratio": best[0] / best[i],
                         "age_difference_median": float(np.median([abs(ages[i][p] - ages[0][p]) for p in common]))
                         if common else None})
            log(f"{name}: {rows[-1]['setting']}: {rows[-1]['photos_per_second']:.2f} photos/s "
                f"({rows[-1]['ratio']:.2f}x), {rows[-1]['answered']}/{len(paths)} answered")
        report["workloads"][name] = rows
    if clip:
        best = [float("inf")] * len(settings)
        frames = [0] * len(settings)
        for _ in range(rounds):
            for i, (answerer, setting) in enumerate(zip(opened, settings)):
                with precision.using(setting.precision):
                    result = video.answer_video(clip, answerer)
                best[i], frames[i] = min(best[i], result.seconds), result.frames
        report["video"] = [{"setting": s.label(), "frames": frames[i], "frames_per_second": frames[i] / best[i],
                            "ratio": best[0] / best[i]} for i, s in enumerate(settings)]
        for row in report["video"]:
            log(f"video: {row['setting']}: {row['frames_per_second']:.1f} frames/s ({row['ratio']:.2f}x)")
    return report


__all__: List[str] = [
    "matmul_peak", "forward_flops", "global_only_model", "train_rate", "train_step_fn", "paired_overhead",
    "inference_rate", "latencies",
    "pipeline_rate", "op_time_profile", "peak_rss_mib", "fraction_of_peak",
    "FacePathSetting", "TODAY", "NEW", "NEW_TEN", "big_photos", "panning_clip", "face_path_rates",
]
