"""Teachers as soft targets beside the labels: the loop's per-face KL term (issue 35)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_alage.models import age_model, attention
from keras_alage.models.age_model import ModelConfig
from keras_alage.training import losses, loop

CONFIG = ModelConfig(age_classes="fgnet", lstm_units=4, crop_size=(2, 2))


def trainer(tmp_path, stage="global"):
    config = loop.TrainConfig(run_dir=str(tmp_path), stage=stage, epochs=1, steps_per_epoch=1, batch_size=4,
                              learning_rate=0.1, lr_decay_epochs=(), image_summaries=0)
    return loop.Trainer(lambda: age_model.build_map_model(CONFIG, (3, 3, 5)), CONFIG.classes().values, config)


def batch(teacher_weight=None):
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(4, 3, 3, 5)).astype("float32")
    labels = {"label": np.array([3, 10, 30, 50], np.int32), "age": np.array([3, 10, 30, 50], np.float32)}
    if teacher_weight is not None:
        labels[losses.TEACHER_PROBS] = losses.soft_targets([20.0, 12.0, 25.0, 60.0], CONFIG.classes().values, 3.0)
        labels[losses.TEACHER_WEIGHT] = np.asarray(teacher_weight, np.float32)
    return tf.constant(maps), {k: tf.constant(v) for k, v in labels.items()}


@pytest.mark.parametrize("stage", ["global", "attention"])
def test_the_teacher_term_adds_weight_times_kl_to_the_stage_loss(tmp_path, stage):
    run = trainer(tmp_path, stage)
    attention.freeze_attention_state(run.model)  # every call below from the same memory
    maps, plain = batch()
    _, taught = batch([0.0, 2.0, 0.5, 1.0])
    _, silent = batch([0.0, 0.0, 0.0, 0.0])
    base, _ = run._replica_gradients(maps, plain, 4.0)
    with_teacher, _ = run._replica_gradients(maps, taught, 4.0)
    zero, _ = run._replica_gradients(maps, silent, 4.0)
    variables = run.model.trainable_variables
    # by hand: d/dw of sum(weight * KL(teacher || stage probs)) / 4
    with tf.GradientTape() as tape:
        probs = run.model(maps, training=True)[run.spec.loss_output]
        term = tf.reduce_sum(taught[losses.TEACHER_WEIGHT] * losses.distillation_loss(taught[losses.TEACHER_PROBS], probs)) / 4.0
    expected = tape.gradient(term, variables)
    for b, t, z, e in zip(base, with_teacher, zero, expected):
        np.testing.assert_allclose(z.numpy(), b.numpy(), atol=1e-7)  # weight 0: the labels alone
        np.testing.assert_allclose((t - b).numpy(), e.numpy(), atol=1e-5 + 1e-4 * np.abs(e.numpy()).max())
    assert max(float(tf.reduce_max(tf.abs(t - b))) for t, b in zip(with_teacher, base)) > 1e-4


def test_soft_targets_centre_on_the_teachers_age():
    classes = np.arange(0, 70, dtype=np.float64)
    targets = losses.soft_targets([10.0, 33.5], classes, 2.0)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(targets @ classes, [10.0, 33.5], atol=1e-3)
    assert targets[0].argmax() == 10 and targets[0, 30] < 1e-6
    with pytest.raises(ValueError, match="sigma must be positive"):
        losses.soft_targets([1.0], classes, 0.0)
