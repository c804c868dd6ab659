import os
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_alage.models import attention, dlib_import
from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.training import losses, loop, run_files

REPO = pathlib.Path(__file__).resolve().parents[2]
TINY = ModelConfig(depth=18, input_size=64, age_classes="adience")


def _batches(count, batch, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(count * batch, 64, 64, 3)).astype("float32")
    labels = rng.integers(0, 8, size=count * batch).astype("int32")
    paths = np.array([f"face{i}.jpg".encode() for i in range(count * batch)])  # as make_dataset gives
    data = tf.data.Dataset.from_tensor_slices((images, {"label": labels, "path": paths}))
    return data.batch(batch, drop_remainder=True).repeat()


def _train(strategy, weights, tmp_path, steps=3, stage="attention", **settings):
    settings = {"learning_rate": 0.01, **settings}
    config = loop.TrainConfig(
        run_dir=str(tmp_path), stage=stage, epochs=1, steps_per_epoch=steps, batch_size=8,
        lr_decay_epochs=(), image_summaries=0, **settings,
    )

    def build():
        model = build_age_model(TINY)
        model.set_weights(weights)
        return model

    trainer = loop.Trainer(build, TINY.classes().values, config, strategy)
    history = trainer.fit(_batches(steps, 8), verbose=0)
    return trainer.model, history


@pytest.mark.slow
def test_mirrored_attention_training_matches_one_device(two_cpu_strategy, tmp_path):
    """Global batch 8 split 4 + 4: the loss averaged over the global batch, the summed
    gradients and the all-reduced LSTM memory make replicated steps equal one-device steps."""
    weights = build_age_model(TINY).get_weights()
    single, single_history = _train(tf.distribute.get_strategy(), weights, tmp_path / "one")
    mirrored, mirrored_history = _train(two_cpu_strategy, weights, tmp_path / "two")
    assert mirrored_history[0]["train_loss"] == pytest.approx(single_history[0]["train_loss"], rel=1e-4, abs=1e-6)
    # Summation order differs between one device and two replicas; over 3 steps a few weights of
    # the location layer drifted by 0.4% under a loaded machine. A wrong reduction (gradients
    # averaged twice, memory not all-reduced) is off by tens of percent.
    for a, b in zip(single.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-2, atol=1e-3)
    for a, b in zip(attention.attention_state(single), attention.attention_state(mirrored)):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4)
    moved = [not np.allclose(a, b) for a, b in zip(weights, single.get_weights())]
    assert any(moved)  # the steps did train


@pytest.mark.slow
def test_an_xla_step_runs_replicated_and_matches_the_plain_step(two_cpu_strategy, tmp_path):
    """XLA compiles the gradients only; the update stays outside it, where MirroredStrategy can
    all-reduce (compiling the update too fails with merge_call inside a tf.function)."""
    weights = build_age_model(TINY).get_weights()
    plain, plain_history = _train(two_cpu_strategy, weights, tmp_path / "plain", steps=2, stage="global")
    compiled, compiled_history = _train(two_cpu_strategy, weights, tmp_path / "xla", steps=2, stage="global",
                                        jit_compile=True)
    assert compiled_history[0]["train_loss"] == pytest.approx(plain_history[0]["train_loss"], rel=1e-3, abs=1e-6)
    for a, b in zip(plain.get_weights(), compiled.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-2, atol=1e-3)
    assert "train_seconds" in compiled_history[0]


@pytest.mark.slow
def test_mirrored_global_training_runs_with_per_replica_batch_norm(two_cpu_strategy, tmp_path):
    weights = build_age_model(TINY).get_weights()
    model, history = _train(two_cpu_strategy, weights, tmp_path, steps=2, stage="global")
    assert np.isfinite(history[0]["train_loss"])
    norms = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    assert norms and not any(l.synchronized for l in norms)


def test_global_batch_must_split_evenly(two_cpu_strategy, tmp_path):
    config = loop.TrainConfig(run_dir=str(tmp_path), steps_per_epoch=1, batch_size=7)
    with pytest.raises(ValueError, match="multiple of the 2 replicas"):
        loop.Trainer(lambda: build_age_model(TINY), TINY.classes().values, config, two_cpu_strategy)


def test_learning_rate_steps_down_at_the_decay_epochs(tmp_path):
    # Epochs and steps count from 0: epoch 60's first step is step 600, and from it on the rate is a
    # tenth (Torch's MultiStepLR, the paper's "from epoch 60 on"), in whatever order the epochs come.
    for order in ((60, 90), (90, 60)):
        config = loop.TrainConfig(str(tmp_path), steps_per_epoch=10, learning_rate=0.01, lr_decay_epochs=order)
        schedule = loop.learning_rate_schedule(config)
        rates = [float(schedule(step)) for step in (0, 599, 600, 601, 899, 900, 5000)]
        assert rates == pytest.approx([0.01, 0.01, 0.001, 0.001, 0.001, 0.0001, 0.0001]), order


def test_the_optimizer_takes_the_decayed_rate_from_the_epochs_first_step(tmp_path):
    config = loop.TrainConfig(str(tmp_path), steps_per_epoch=2, learning_rate=1.0, lr_decay=0.1, lr_decay_epochs=(1,))
    weight = keras.Variable(0.0)
    optimizer = keras.optimizers.SGD(learning_rate=loop.learning_rate_schedule(config))
    moves = []
    for _ in range(4):  # epoch 0: steps 0, 1; epoch 1: steps 2, 3
        before = float(weight.numpy())
        optimizer.apply_gradients([(tf.constant(-1.0), weight)])
        moves.append(float(weight.numpy()) - before)
    assert moves == pytest.approx([1.0, 1.0, 0.1, 0.1])


def test_the_final_model_is_0644_like_other_outputs(tmp_path):
    previous = os.umask(0o022)
    try:
        run_files.save_model_atomically(build_age_model(TINY), str(tmp_path / "model.keras"))
    finally:
        os.umask(previous)
    assert (tmp_path / "model.keras").stat().st_mode & 0o777 == 0o644 and os.listdir(tmp_path) == ["model.keras"]


def test_a_full_disk_while_saving_names_the_model(tmp_path, monkeypatch):
    model = build_age_model(TINY)

    def fills_the_disk(self, filepath, *args, **kwargs):  # as Keras' zip writer wraps it
        raise RuntimeError(f"Error writing {filepath}: [Errno 28] No space left on device")

    monkeypatch.setattr(type(model), "save", fills_the_disk)
    with pytest.raises(OSError, match="No space left on device") as raised:
        run_files.save_model_atomically(model, str(tmp_path / "model.keras"))
    assert raised.value.filename == str(tmp_path / "model.keras") and os.listdir(tmp_path) == []


@pytest.mark.slow
def test_attention_stage_trains_only_the_branch_and_carries_state(tmp_path):
    weights = build_age_model(TINY).get_weights()
    config = loop.TrainConfig(str(tmp_path), stage="attention", epochs=1, steps_per_epoch=2, batch_size=8,
                                  learning_rate=0.05, image_summaries=0)

    def build():
        model = build_age_model(TINY)
        model.set_weights(weights)
        return model

    trainer = loop.Trainer(build, TINY.classes().values, config)
    trainer.fit(_batches(2, 8), verbose=0)
    before = build_age_model(TINY)
    before.set_weights(weights)
    backbone_after = trainer.model.get_layer("backbone").get_weights()
    for a, b in zip(before.get_layer("backbone").get_weights(), backbone_after):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(before.get_layer("local_head").get_weights()[0],
                           trainer.model.get_layer("local_head").get_weights()[0])
    hidden, _ = attention.attention_state(trainer.model)
    assert np.abs(hidden).sum() > 0  # the memory moved with the training batches




@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_probabilities_and_ages_in_float32(policy, tmp_path):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        weights = build_age_model(TINY).get_weights()
        model, history = _train(tf.distribute.get_strategy(), weights, tmp_path, steps=2, stage="global")
        outputs = model(np.zeros((2, 64, 64, 3), "float32"), training=False)
        assert all(outputs[k].dtype == "float32" for k in ("age", "probs", "global_probs", "local_probs", "box"))
        assert np.isfinite(history[0]["train_loss"])
        assert model.get_layer("backbone").compute_dtype == policy.split("_")[1]
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.slow
def test_xla_compiled_step_matches_the_plain_step(tmp_path):
    weights = build_age_model(TINY).get_weights()
    losses = []
    for jit in (False, True):
        config = loop.TrainConfig(str(tmp_path / str(jit)), stage="attention", epochs=1, steps_per_epoch=1,
                                      batch_size=8, learning_rate=0.01, image_summaries=0, jit_compile=jit)

        def build():
            model = build_age_model(TINY)
            model.set_weights(weights)
            return model

        trainer = loop.Trainer(build, TINY.classes().values, config)
        losses.append(trainer.fit(_batches(1, 8), verbose=0)[0]["train_loss"])
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)


@pytest.mark.parametrize("loss_scaled", [False, True])
def test_weight_decay_has_its_size_under_every_precision(loss_scaled):
    # A weight the loss does not depend on moves by lr * decay * w in one SGD step, whether
    # the optimizer sees plain gradients or loss-scaled ones (float16 mixed precision).
    weight = keras.Variable(2.0, dtype="float32")
    optimizer = keras.optimizers.SGD(0.1)
    if loss_scaled:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build([weight])
    with tf.GradientTape() as tape:
        loss = 0.0 * weight
        scaled = optimizer.scale_loss(loss) if loss_scaled else loss
    gradients = losses.with_weight_decay(tape.gradient(scaled, [weight]), [weight], 0.01, optimizer)
    optimizer.apply_gradients(zip(gradients, [weight]))
    assert 2.0 - float(weight.numpy()) == pytest.approx(0.1 * 0.01 * 2.0, rel=1e-3)


def test_the_training_step_applies_the_weight_decay(tmp_path):
    weights = build_age_model(TINY).get_weights()
    kernels = []
    for decay in (0.0, 0.1):
        model, _ = _train(None, weights, tmp_path / str(decay), steps=1, weight_decay=decay)
        kernels.append(model.get_layer("local_head").kernel.numpy())
    start = build_age_model(TINY)
    start.set_weights(weights)
    initial = start.get_layer("local_head").kernel.numpy()
    # One Nesterov SGD step moves w by lr (1 + momentum) (g + decay w): the runs differ by the decay's share.
    # Floor: the two runs' gradients differ by float noise (up to ~2e-7 seen); decay shares reach 2e-4.
    np.testing.assert_allclose(kernels[0] - kernels[1], 0.01 * 1.9 * 0.1 * initial, rtol=1e-3, atol=1e-6)


def test_frozen_batch_norm_keeps_statistics_while_the_convolutions_learn(tmp_path):
    """--freeze_batch_norm: the global stage still trains the backbone's convolutions, but its
    batch norms normalise with, and keep, their stored statistics and affine."""

    start = build_age_model(TINY)
    # Statistics that fit the inputs, as an imported network's would (fresh ones blow up unnormalised).
    dlib_import.recalibrate_batch_norm(start, np.random.default_rng(0).normal(size=(16, 64, 64, 3)))
    weights = start.get_weights()
    model, _ = _train(None, weights, tmp_path / "frozen", stage="global", freeze_batch_norm=True, learning_rate=1e-4)
    free, _ = _train(None, weights, tmp_path / "free", stage="global", learning_rate=1e-4)
    for name in ("conv1_bn", "stack1_block0_1_bn"):
        for a, b in zip(start.get_layer("backbone").get_layer(name).get_weights(),
                        model.get_layer("backbone").get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
        moved = [not np.allclose(a, b) for a, b in zip(start.get_layer("backbone").get_layer(name).get_weights(),
                                                         free.get_layer("backbone").get_layer(name).get_weights())]
        assert any(moved), name  # without the flag the same steps move them
    kernel = lambda m: m.get_layer("backbone").get_layer("conv1_conv").get_weights()[0]  # noqa: E731
    assert not np.allclose(kernel(start), kernel(model))


def test_distillation_loss_by_hand_and_without_gradient_to_the_teacher():
    teacher = tf.constant([[0.5, 0.5], [0.9, 0.1]])
    student = tf.constant([[0.25, 0.75], [0.9, 0.1]])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([teacher, student])
        loss = losses.distillation_loss(teacher, student)
    np.testing.assert_allclose(loss.numpy(), [0.5 * np.log(2.0) + 0.5 * np.log(2.0 / 3.0), 0.0], atol=1e-6)
    assert tape.gradient(loss, teacher) is None
    assert np.abs(tape.gradient(loss, student).numpy()).max() > 0.1


def test_distillation_pulls_the_local_head_towards_the_global_heads_answer(tmp_path):
    """--distill_weight: one step's pull on the local head's bias is w (P_local - P_global) per face,
    on top of the labels' (zero kernels make both heads' answers independent of the features)."""
    model = build_age_model(TINY)
    teacher_logits = np.zeros(8, np.float32)
    teacher_logits[3] = 4.0
    for name, bias in (("global_head", teacher_logits), ("local_head", np.zeros(8, np.float32))):
        kernel, _ = model.get_layer(name).get_weights()
        model.get_layer(name).set_weights([np.zeros_like(kernel), bias])
    weights = model.get_weights()
    biases = {}
    for distill in (0.0, 2.0):
        trained, _ = _train(None, weights, tmp_path / str(distill), steps=1, weight_decay=0.0, distill_weight=distill)
        biases[distill] = trained.get_layer("local_head").get_weights()[1]
    teacher = np.exp(teacher_logits) / np.exp(teacher_logits).sum()
    # One Nesterov SGD step moves w by -lr (1 + momentum) g; the local answer starts uniform (1/8).
    np.testing.assert_allclose(biases[2.0] - biases[0.0], -0.01 * 1.9 * 2.0 * (1.0 / 8.0 - teacher), atol=1e-5)


def test_what_killed_saves_leave_is_removed_and_nothing_else(tmp_path):
    run = tmp_path / "fold0"
    (run / "checkpoints" / "ckpt-3_temp").mkdir(parents=True)
    leftovers = [run / ".model-abc123.keras", run / "best.partial.weights.h5", run / ".history.jsonl-x1.tmp",
                 run / "checkpoints" / "ckpt-3_temp"]
    kept = [run / "model.keras", run / "best.weights.h5", run / "history.jsonl", run / ".lock",
            run / "checkpoints" / "ckpt-2.index", run / "checkpoints" / "checkpoint"]
    for path in leftovers[:3] + kept:
        path.write_text("x")
    removed = run_files.remove_leftovers(str(run))
    assert sorted(removed) == sorted(str(p) for p in leftovers)
    assert not any(p.exists() for p in leftovers) and all(p.exists() for p in kept)
