"""tf.data input: TFRecord shards -> batches of preprocessed faces and their labels.

Everything is composed here, in `make_dataset`, from the pure functions of
`tfrecords` (parsing) and `augment` (preprocessing).
"""

import tensorflow as tf

from pipelines import augment, tfrecords

AUTOTUNE = tf.data.AUTOTUNE


def labels_of(parsed):
    return {
        "label": tf.cast(parsed["label"], tf.int32),
        "age": parsed["age"],
        "age_std": parsed["age_std"],
        "path": parsed["path"],
    }


def make_dataset(
    file_pattern,
    training: bool,
    batch_size: int,
    input_size: int = 224,
    crops: str = "ten",
    shuffle_buffer: int = 2048,
    seed: int = 0,
    deterministic: bool = False,
    drop_remainder=None,
    area_range=augment.AREA_RANGE,
    jitter: bool = True,
    cycle_length: int = 4,
    repeat: bool = False,
    downscale: float = 0.0,
    grayscale: float = 0.0,
    view: str = "paper",
):
    """Batches of (images, labels) from TFRecord files.

    Args:
      file_pattern: glob or list of TFRecord files.
      training: augment and shuffle (True) or ten-/centre-crop in file order (False).
      batch_size: images per batch; training drops the last partial batch by default so
        every step has the same shape.
      input_size: model input side in pixels (224 in the paper).
      crops: evaluation crops, "ten" ([batch, 10, s, s, 3]) or "center" ([batch, s, s, 3]).
      deterministic: fixed order for a fixed seed (slower), e.g. for reproducible runs.
      downscale: probability of shrinking a training face to 32-64 px and back
        (`augment.random_downscale`).
      grayscale: probability of a training face in grey (`augment.random_grayscale`).
      view: the training view, "paper" or "eval" (`augment.preprocess_for_train`).
      repeat: endless (training loops count steps per epoch, so every replica and worker
        takes the same number of steps).

    Returns:
      A dataset of (images, {"label", "age", "age_std", "path"}); one pass is one epoch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive; received {batch_size}.")
    files = tf.io.gfile.glob(file_pattern) if isinstance(file_pattern, str) else list(file_pattern)
    if not files:
        raise FileNotFoundError(f"No TFRecord files match {file_pattern!r}.")
    options = tf.data.Options()
    options.deterministic = deterministic or not training
    dataset = tf.data.Dataset.from_tensor_slices(sorted(files))
    if training:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.interleave(
        tf.data.TFRecordDataset,
        cycle_length=min(cycle_length, len(files)) if training else 1,
        num_parallel_calls=AUTOTUNE if training else None,
    )
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)

    def preprocess(serialized):
        parsed = tfrecords.parse_example(serialized)
        if training:
            image = augment.preprocess_for_train(parsed["image"], input_size, area_range=area_range, jitter=jitter,
                                                 downscale=downscale, grayscale=grayscale, view=view)
        else:
            image = augment.preprocess_for_eval(augment.decode(parsed["image"]), input_size, crops=crops)
        return image, labels_of(parsed)

    dataset = dataset.map(preprocess, num_parallel_calls=AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=training if drop_remainder is None else drop_remainder)
    return dataset.prefetch(AUTOTUNE).with_options(options)
