"""TensorBoard: per epoch, the training run's losses, accuracy, MAE and learning rate; the
validation run's (only where there is one) with validation faces drawn with their attention box."""

import os
from typing import Callable, Optional

import tensorflow as tf

from keras_alage.models import attention
from alage_pipelines.augment import denormalize


def summary_writers(run_dir: str, validation: bool):
    """TensorBoard's runs: train, and validation only where there is one (a run trained with
    --novalidate listed an empty validation run)."""
    logs = os.path.join(run_dir, "logs")
    names = ("train", "validation") if validation else ("train",)
    return {name: tf.summary.create_file_writer(os.path.join(logs, name)) for name in names}


def write_summaries(writers, entry: dict, step: int, validation_dataset=None,
                    predict: Optional[Callable] = None, image_summaries: int = 0) -> None:
    """One epoch's history `entry` as scalars at `step`; with `validation_dataset`, its first
    `image_summaries` faces with the boxes `predict` (images -> the model's outputs) draws."""
    with writers["train"].as_default(step=step):
        _scalars(entry, "train_")
        tf.summary.scalar("learning_rate", entry["learning_rate"])
    writers["train"].flush()
    if validation_dataset is None:
        return
    with writers["validation"].as_default(step=step):
        _scalars(entry, "val_")
        if image_summaries:
            images, _ = next(iter(validation_dataset))
            images = images[:image_summaries]
            boxes = predict(images)["box"]
            tf.summary.image("attention_boxes", draw_boxes(images, boxes), max_outputs=image_summaries)
    writers["validation"].flush()


def _scalars(entry: dict, prefix: str) -> None:
    for key, value in entry.items():
        if key.startswith(prefix):
            tf.summary.scalar(key[len(prefix):], value)


def draw_boxes(images, boxes):
    """Normalised model inputs -> [0, 1] images with each (x, y, w, h) box drawn in red."""
    pictures = denormalize(images)
    corners = attention.box_to_corners(tf.cast(boxes, tf.float32))[:, None, :]
    return tf.image.draw_bounding_boxes(pictures, corners, tf.constant([[1.0, 0.0, 0.0, 1.0]]))
