"""Small synthetic TFRecord files in the project's schema, for training tests."""

import cv2
import numpy as np
import tensorflow as tf

from pipelines import tfrecords
from pipelines.records import AgeRecord


def write_records(path, count: int, num_classes: int, size: int = 48, seed: int = 0) -> list:
    """`count` face-like JPEG records whose brightness grows with the label; returns the records."""
    rng = np.random.default_rng(seed)
    records = []
    with tf.io.TFRecordWriter(str(path)) as writer:
        for i in range(count):
            label = int(rng.integers(0, num_classes))
            base = 40 + 170 * label / max(num_classes - 1, 1)
            image = np.clip(base + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
            ok, encoded = cv2.imencode(".jpg", image)
            assert ok
            record = AgeRecord(f"{path}#{i}", float(label), label, subject=f"s{i % 5}")
            writer.write(tfrecords.encode_example(record, encoded.tobytes()))
            records.append(record)
    return records
