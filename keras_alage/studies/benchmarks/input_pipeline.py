"""Images/s of the tf.data training pipeline against a naive per-image OpenCV loop
(`benchmarks/input_pipeline.py`).

Both read the same encoded faces from the same TFRecord shards (written first from FG-NET), do the
same work (decode, random crop of random area and aspect, resize, flip, normalise) and are timed in
one run, so the ratio is meaningful on a noisy machine.
"""

import os
import tempfile
import time

import cv2
import numpy as np
import tensorflow as tf

from alage_pipelines import augment, configs, dataset, images, tfrecords
from alage_pipelines.readers import fgnet


def write_shards(records, folder, shards):
    paths = [os.path.join(folder, f"bench-{i:05d}-of-{shards:05d}.tfrecord") for i in range(shards)]
    for shard, path in enumerate(paths):
        with tf.io.TFRecordWriter(path) as writer:
            for record in records[shard::shards]:
                with open(record.path, "rb") as handle:
                    writer.write(tfrecords.encode_example(record, handle.read()))
    return paths


def naive_loop(paths, count, size, rng):
    """The per-image Python/OpenCV loop many age-estimation repositories use."""
    done = 0
    while done < count:
        for serialized in tf.data.TFRecordDataset(paths):
            parsed = tf.train.Example.FromString(serialized.numpy()).features.feature
            image = images.decode_image(np.frombuffer(parsed["image"].bytes_list.value[0], np.uint8))
            height, width = image.shape[:2]
            area = rng.uniform(*augment.AREA_RANGE) * height * width
            aspect = np.exp(rng.uniform(*np.log(augment.ASPECT_RANGE)))
            w = int(min(width, round(np.sqrt(area * aspect))))
            h = int(min(height, round(np.sqrt(area / aspect))))
            top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
            crop = cv2.resize(image[top : top + h, left : left + w], (size, size), interpolation=cv2.INTER_LINEAR)
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            images.normalize(crop)
            done += 1
            if done >= count:
                break
    return done


def tf_pipeline(paths, count, size, batch_size):
    data = dataset.make_dataset(paths, dataset.DatasetConfig(
        batch_size, size, training=True, augmentation=configs.Augmentation(jitter=False))).repeat()
    done = 0
    for batch, _ in data:
        done += int(batch.shape[0])
        if done >= count:
            break
    return done


def compare(fgnet_dir: str, count: int, input_size: int, batch_size: int, shards: int) -> str:
    """Both pipelines' images/s on `count` FG-NET faces written to `shards` TFRecord shards; returns
    the lines to print."""
    records = fgnet.read_fgnet(fgnet_dir).records
    with tempfile.TemporaryDirectory() as folder:
        paths = write_shards(records, folder, shards)
        tf_pipeline(paths, batch_size * 2, input_size, batch_size)  # warm-up: tracing
        start = time.perf_counter()
        n_tf = tf_pipeline(paths, count, input_size, batch_size)
        tf_rate = n_tf / (time.perf_counter() - start)
        start = time.perf_counter()
        n_naive = naive_loop(paths, count, input_size, np.random.default_rng(0))
        naive_rate = n_naive / (time.perf_counter() - start)
    return "\n".join([f"machine: {os.cpu_count()} CPU cores, TensorFlow {tf.__version__}",
                      f"input {input_size} px, {count} FG-NET images from {shards} TFRecord shards",
                      f"tf.data pipeline      {tf_rate:8.1f} images/s",
                      f"naive OpenCV loop     {naive_rate:8.1f} images/s",
                      f"ratio tf.data / naive {tf_rate / naive_rate:8.2f}"])
