"""Small synthetic TFRecord files in the project's schema, and small real builds of synthetic faces,
for training tests."""

import cv2
import numpy as np
import tensorflow as tf

from alage_pipelines import build, faces, tfrecords
from alage_pipelines.records import AgeRecord


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


def synthetic_build(root, rows, num_classes: int, split, dataset: str, noise: float = 15.0, size: int = 40):
    """A real build (Beam, no face detection) of flat synthetic faces under root/build.

    `rows` are (file name, age, label, subject, brightness); `split` maps the records to the
    protocol's parts (e.g. `lambda r: protocols.subject_kfold(r, 2, seed=0)`).
    """
    rng = np.random.default_rng(0)
    records = []
    for name, age, label, subject, brightness in rows:
        path = root / name
        cv2.imwrite(str(path), np.clip(brightness + rng.normal(0, noise, (size, size, 3)), 0, 255).astype(np.uint8))
        records.append(AgeRecord(str(path), float(age), label, subject=subject))
    config = build.BuildConfig(str(root / "build"), num_classes, faces.CropSpec(size=size), faces.FacePolicy(detect=False))
    build.build_tfrecords(split(records), records, config, dataset)
    return root / "build"


def event_tags(folder) -> set:
    """The summary tags of every TensorBoard event file in `folder` (a pathlib.Path). A file's
    truncated last record (a writer killed mid-record, as the resume tests kill runs) ends that
    file, as TensorBoard reads it."""
    tags = set()
    for path in folder.glob("events.out.tfevents.*"):
        try:
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                tags.update(value.tag for value in event.summary.value)
        except tf.errors.DataLossError:
            continue
    return tags
