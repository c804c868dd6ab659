"""TensorBoard's runs: what a user opens after training, with and without validation."""

import numpy as np
import tensorflow as tf

from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.training import loop, summaries
from tests.record_utils import event_tags

TINY = ModelConfig(depth=18, input_size=32, age_classes="adience")


def _data(count, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(count, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 8, size=count).astype("int32")
    paths = np.array([f"face{i}.jpg".encode() for i in range(count)])
    return tf.data.Dataset.from_tensor_slices((images, {"label": labels, "path": paths})).batch(4, drop_remainder=True)


def _fit(run_dir, validation):
    config = loop.TrainConfig(run_dir=str(run_dir), stage="global", epochs=1, steps_per_epoch=2, batch_size=4,
                              learning_rate=0.01, lr_decay_epochs=(), image_summaries=2)
    trainer = loop.Trainer(lambda: build_age_model(TINY), TINY.classes().values, config)
    trainer.fit(_data(8).repeat(), _data(4, seed=1) if validation else None, verbose=0)


def test_a_run_without_validation_lists_no_empty_validation_run(tmp_path):
    _fit(tmp_path, validation=False)
    logs = tmp_path / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["train"]  # TensorBoard lists every folder as a run
    assert {"loss", "mae", "learning_rate"} <= event_tags(logs / "train")  # written and flushed by the epoch's end


def test_a_run_with_validation_has_its_scalars_and_attention_boxes(tmp_path):
    _fit(tmp_path, validation=True)
    logs = tmp_path / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["train", "validation"]
    assert {"loss", "mae", "attention_boxes"} <= event_tags(logs / "validation")


def test_summaries_draw_the_boxes_of_the_predict_they_are_handed(tmp_path):
    """The summaries need no trainer: a plain function answering boxes is drawn, at the epoch's step."""
    writers = summaries.summary_writers(str(tmp_path), validation=True)
    asked = []

    def predict(images):
        asked.append(int(images.shape[0]))
        return {"box": tf.tile([[0.25, 0.25, 0.5, 0.5]], [images.shape[0], 1])}

    entry = {"epoch": 3, "learning_rate": 0.1, "train_loss": 1.0, "val_loss": 2.0, "val_mae": 3.0}
    summaries.write_summaries(writers, entry, 3, _data(4), predict, image_summaries=3)
    assert asked == [3]  # the first validation batch, cut to the faces asked for
    assert event_tags(tmp_path / "logs" / "validation") == {"loss", "mae", "attention_boxes"}
    assert event_tags(tmp_path / "logs" / "train") == {"loss", "learning_rate"}
