"""The TFRecord Example schema of keras-alage: one encoded face and its labels per record."""

import tensorflow as tf

from alage_pipelines.records import AgeRecord

FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),  # encoded JPEG/PNG bytes
    "age": tf.io.FixedLenFeature([], tf.float32),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "age_std": tf.io.FixedLenFeature([], tf.float32, default_value=0.0),
    "subject": tf.io.FixedLenFeature([], tf.string, default_value=b""),
    "path": tf.io.FixedLenFeature([], tf.string, default_value=b""),
}


def _bytes(value: bytes):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def encode_example(record: AgeRecord, image_bytes: bytes) -> bytes:
    """Serialises one record with its encoded image."""
    feature = {
        "image": _bytes(image_bytes),
        "age": tf.train.Feature(float_list=tf.train.FloatList(value=[record.age])),
        "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[record.label])),
        "age_std": tf.train.Feature(float_list=tf.train.FloatList(value=[record.age_std])),
        "subject": _bytes(record.subject.encode("utf-8")),
        "path": _bytes(record.path.encode("utf-8")),
    }
    # Deterministic: features in key order, so every process (any runner) writes the same bytes.
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


def parse_example(serialized):
    """A scalar serialized Example -> dict of tensors (image still encoded)."""
    return tf.io.parse_single_example(serialized, FEATURES)
