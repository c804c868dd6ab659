import copy
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from keras_alage import attention, cli, evaluation, metrics, training, weight_import
from pipelines import augment
from keras_alage.model import ModelConfig, build_age_model

REPO = pathlib.Path(__file__).resolve().parents[1]
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
    config = training.TrainConfig(
        run_dir=str(tmp_path), stage=stage, epochs=1, steps_per_epoch=steps, batch_size=8,
        lr_decay_epochs=(), image_summaries=0, **settings,
    )

    def build():
        model = build_age_model(TINY)
        model.set_weights(weights)
        return model

    trainer = training.Trainer(build, TINY.classes().values, config, strategy)
    history = trainer.fit(_batches(steps, 8), verbose=0)
    return trainer.model, history


def test_mirrored_attention_training_matches_one_device(two_cpu_strategy, tmp_path):
    """Global batch 8 split 4 + 4: the loss averaged over the global batch, the summed
    gradients and the all-reduced LSTM memory make replicated steps equal one-device steps."""
    weights = build_age_model(TINY).get_weights()
    single, single_history = _train(tf.distribute.get_strategy(), weights, tmp_path / "one")
    mirrored, mirrored_history = _train(two_cpu_strategy, weights, tmp_path / "two")
    assert mirrored_history[0]["train_loss"] == pytest.approx(single_history[0]["train_loss"], rel=1e-5)
    # Summation order differs between one device and two replicas; over 3 steps a few weights of
    # the location layer drifted by 0.4% under a loaded machine. A wrong reduction (gradients
    # averaged twice, memory not all-reduced) is off by tens of percent.
    for a, b in zip(single.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(b, a, rtol=1e-2, atol=1e-3)
    for a, b in zip(attention.attention_state(single), attention.attention_state(mirrored)):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4)
    moved = [not np.allclose(a, b) for a, b in zip(weights, single.get_weights())]
    assert any(moved)  # the steps did train


def test_mirrored_global_training_runs_with_per_replica_batch_norm(two_cpu_strategy, tmp_path):
    weights = build_age_model(TINY).get_weights()
    model, history = _train(two_cpu_strategy, weights, tmp_path, steps=2, stage="global")
    assert np.isfinite(history[0]["train_loss"])
    norms = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
    assert norms and not any(l.synchronized for l in norms)


def test_global_batch_must_split_evenly(two_cpu_strategy, tmp_path):
    config = training.TrainConfig(run_dir=str(tmp_path), steps_per_epoch=1, batch_size=7)
    with pytest.raises(ValueError, match="multiple of the 2 replicas"):
        training.Trainer(lambda: build_age_model(TINY), TINY.classes().values, config, two_cpu_strategy)


def test_learning_rate_steps_down_at_the_decay_epochs(tmp_path):
    config = training.TrainConfig(str(tmp_path), steps_per_epoch=10, learning_rate=0.01, lr_decay_epochs=(60, 90))
    schedule = training.learning_rate_schedule(config)
    rates = [float(schedule(step)) for step in (0, 599, 600, 601, 900, 901, 5000)]
    assert rates == pytest.approx([0.01, 0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001])


def test_attention_stage_trains_only_the_branch_and_carries_state(tmp_path):
    weights = build_age_model(TINY).get_weights()
    config = training.TrainConfig(str(tmp_path), stage="attention", epochs=1, steps_per_epoch=2, batch_size=8,
                                  learning_rate=0.05, image_summaries=0)

    def build():
        model = build_age_model(TINY)
        model.set_weights(weights)
        return model

    trainer = training.Trainer(build, TINY.classes().values, config)
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


def test_transfer_weights_from_a_pretrained_model_with_other_classes():
    source = build_age_model(ModelConfig(depth=18, input_size=32, age_classes="imdb_wiki"))
    target = build_age_model(ModelConfig(depth=18, input_size=32, age_classes="fgnet"))
    report = weight_import.transfer_weights(target, source)
    assert "conv1_conv" in report.copied and "attention_lstm" in report.copied
    np.testing.assert_array_equal(
        target.get_layer("backbone").get_layer("conv1_conv").get_weights()[0],
        source.get_layer("backbone").get_layer("conv1_conv").get_weights()[0],
    )
    # Ages 0-69 are among 0-100: the heads start as the source's prediction over those ages.
    assert report.mapped_by_age == ["global_head", "local_head"] and not report.new_in_target
    for model in (source, target):
        attention.freeze_attention_state(model)
    batch = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    before, after = source(batch, training=False), target(batch, training=False)
    for head in ("global_probs", "local_probs"):
        restricted = before[head].numpy()[:, :70]
        np.testing.assert_allclose(after[head], restricted / restricted.sum(-1, keepdims=True), rtol=1e-4)
    with pytest.raises(ValueError, match="must be a .keras model"):
        weight_import.load_initial_weights(target, "weights.npz")


@pytest.mark.parametrize("target_classes", ["morph", "adience"])
def test_heads_whose_ages_the_source_lacks_start_new(target_classes):
    # FG-NET's 0-69 lacks MORPH's 70-77; Adience's group middles (10.5, ...) are no FG-NET age.
    source = build_age_model(ModelConfig(depth=18, input_size=32, age_classes="fgnet"))
    target = build_age_model(ModelConfig(depth=18, input_size=32, age_classes=target_classes))
    report = weight_import.transfer_weights(target, source)
    assert report.mapped_by_age == [] and {"global_head", "local_head"} <= set(report.new_in_target)


def test_ror_initialised_from_a_resnet_age_model_computes_the_resnet_function():
    source = build_age_model(ModelConfig(depth=18, input_size=64, age_classes="fgnet"))
    # RoR-2: both of its shortcuts are projections (RoR-3's identity shortcuts add their input).
    target = build_age_model(ModelConfig(depth=18, input_size=64, age_classes="fgnet", ror_levels=2))
    report = weight_import.transfer_weights(target, source)
    assert report.zero_initialised and all(n.startswith("ror_") for n in report.zero_initialised)
    for model in (source, target):
        attention.freeze_attention_state(model)
    batch = np.random.default_rng(0).normal(size=(2, 64, 64, 3)).astype("float32")
    expected, got = source(batch, training=False), target(batch, training=False)
    np.testing.assert_allclose(got["probs"], expected["probs"], atol=1e-5)
    again = weight_import.transfer_weights(target, target)  # nothing new: nothing zeroed
    assert again.zero_initialised == []


# --- evaluation ------------------------------------------------------------------------------


def test_ten_crop_predictions_average_the_crops_per_head():
    model = build_age_model(TINY)
    attention.freeze_attention_state(model)
    crops = np.random.default_rng(1).normal(size=(3, 10, 64, 64, 3)).astype("float32")
    labels = {"label": np.array([0, 3, 7]), "age": np.array([1.0, 10.5, 80.0], "float32"),
              "age_std": np.zeros(3, "float32"), "path": np.array([b"a", b"b", b"c"])}
    data = tf.data.Dataset.from_tensors((crops, labels))
    predictions = evaluation.predict_dataset(model, data)
    flat = model(crops.reshape(30, 64, 64, 3), training=False)
    for head, key in evaluation.HEADS.items():
        # Probabilities reach 1e-24: an absolute floor, as kernels may round them differently.
        np.testing.assert_allclose(predictions[head], np.asarray(flat[key]).reshape(3, 10, -1).mean(1),
                                   rtol=1e-5, atol=1e-7)
    result = evaluation.score(predictions, TINY.classes().values, grouped=True)
    assert set(result) == {"count", "global", "local", "combined"} and result["count"] == 3
    assert {"mae", "cs5", "bands", "exact_accuracy", "one_off_accuracy"} <= set(result["combined"])
    assert "epsilon_error" not in result["combined"]  # no label std


def test_fold_aggregate_and_markdown_report(tmp_path):
    def fold(mae, n):
        head = {"mae": mae, "cs5": 0.5, "epsilon_error": 0.3,
                "bands": {"0-9": {"mae": mae, "count": n}, "60+": {"mae": float("nan"), "count": 0}}}
        return {"count": n, "global": dict(head), "local": dict(head), "combined": dict(head)}

    per_fold = {"fold0": fold(4.0, 10), "fold1": fold(6.0, 30)}
    combined = evaluation.write_report(str(tmp_path), per_fold, "FG-NET")
    assert combined["combined"]["mae"] == {"mean": 5.0, "std": 1.0}
    assert combined["combined"]["bands"]["0-9"] == {"mae": 5.5, "count": 40}  # pooled by images
    text = (tmp_path / "results.md").read_text()
    assert "| **mean ± std** | 40 | 5.000 ± 1.000" in text and "| fold1 | 30 |" in text
    assert "epsilon_error" in text and (tmp_path / "results.json").exists()


def test_errors_per_attribute_and_their_pooling_over_folds():
    classes = list(range(10))
    one_hot = np.eye(10, dtype="float32")
    predictions = {  # predicted ages 2, 4, 9, 9; true 1, 4, 3, 9
        "combined": one_hot[[2, 4, 9, 9]], "age": np.array([1.0, 4.0, 3.0, 9.0]),
        "path": np.array([b"a.jpg", b"b.jpg", b"c.jpg", b"d.jpg"]),
    }
    attributes = {"a.jpg": {"gender": "female"}, "b.jpg": {"gender": "male"}, "c.jpg": {"gender": "female"},
                  "d.jpg": {}}
    groups = evaluation.score_groups(predictions, classes, attributes, ["gender"])["gender"]
    assert groups["female"] == {"mae": 3.5, "cs5": 0.5, "count": 2}
    assert groups["male"]["mae"] == 0.0 and groups["unknown"]["count"] == 1
    with pytest.raises(ValueError, match="not in the build's record log"):
        evaluation.score_groups(predictions, classes, {"a.jpg": {}}, ["gender"])

    def fold(mae, n):
        head = {"mae": mae, "cs5": 0.5, "bands": {"0-9": {"mae": mae, "count": n}}}
        return {"count": n, "global": head, "local": head, "combined": head, "groups_head": "global",
                "groups": {"gender": {"male": {"mae": mae, "cs5": 1.0, "count": n}}}}

    pooled = evaluation.aggregate({"fold0": fold(2.0, 1), "fold1": fold(5.0, 2)})
    assert pooled["groups"]["gender"]["male"] == {"mae": 4.0, "cs5": 1.0, "count": 3}
    report = evaluation.markdown_report({"fold0": fold(2.0, 1)}, pooled)
    assert "Global head per gender" in report and "| male | 3 | 4.000 | 1.000 |" in report


def test_mean_age_predictor_by_hand():
    result = evaluation.constant_predictor([10.0, 20.0], [5.0, 15.0, 40.0])  # predicts 15
    assert result["mae"] == pytest.approx(35 / 3) and result["cs5"] == pytest.approx(1 / 3)
    assert result["bands"]["40-49"] == {"mae": 25.0, "count": 1}
    with pytest.raises(ValueError, match="needs training and test ages"):
        evaluation.constant_predictor([], [1.0])


# --- flagfiles ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_flags():
    """The flags scripts/train.py defines, in a FlagValues of their own."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_script", REPO / "scripts" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.FLAGS


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.flags")), ids=lambda p: p.name)
def test_every_flagfile_parses_and_names_existing_flags(path, train_flags):
    values = copy.deepcopy(train_flags)
    lines = [l.strip() for l in path.read_text().splitlines() if l.strip() and not l.lstrip().startswith("#")]
    names = [l[2:].split("=", 1)[0] for l in lines]
    names = [n[2:] if n not in values and n.startswith("no") and n[2:] in values else n for n in names]  # --noflag
    unknown = [n for n in names if n not in values]
    assert not unknown, f"{path.name} names flags train.py does not define: {unknown}"
    values(["train.py", f"--flagfile={path}"])  # types and enum values
    assert values["data_dir"].present and values["run_dir"].present and values["age_classes"].present


def test_short_flagfile_names_resolve_to_configs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.resolve_flagfiles(["train.py", "--flagfile=morph.flags", "--epochs=3"]) == [
        "train.py", f"--flagfile={cli.CONFIG_DIR}/morph.flags", "--epochs=3"]
    (tmp_path / "morph.flags").write_text("--epochs=1\n")
    assert cli.resolve_flagfiles(["--flagfile=morph.flags"]) == ["--flagfile=morph.flags"]  # the local file wins
    with pytest.raises(SystemExit) as stopped:
        cli.resolve_flagfiles(["--flagfile=nope.flags"])
    assert stopped.value.code == 2 and "--flagfile: nope.flags not found" in capsys.readouterr().err
    assert isinstance(flags.FLAGS, flags.FlagValues)


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


def test_xla_compiled_step_matches_the_plain_step(tmp_path):
    weights = build_age_model(TINY).get_weights()
    losses = []
    for jit in (False, True):
        config = training.TrainConfig(str(tmp_path / str(jit)), stage="attention", epochs=1, steps_per_epoch=1,
                                      batch_size=8, learning_rate=0.01, image_summaries=0, jit_compile=jit)

        def build():
            model = build_age_model(TINY)
            model.set_weights(weights)
            return model

        trainer = training.Trainer(build, TINY.classes().values, config)
        losses.append(trainer.fit(_batches(1, 8), verbose=0)[0]["train_loss"])
    assert losses[1] == pytest.approx(losses[0], rel=1e-3)


def test_local_head_starts_as_a_copy_of_the_global_head():
    model = build_age_model(ModelConfig(depth=18, input_size=32, age_classes="fgnet"))
    weight_import.local_head_from_global(model)
    for a, b in zip(model.get_layer("global_head").get_weights(), model.get_layer("local_head").get_weights()):
        np.testing.assert_array_equal(a, b)


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
    gradients = training.with_weight_decay(tape.gradient(scaled, [weight]), [weight], 0.01, optimizer)
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


def test_epsilon_error_is_reported_where_labels_carry_a_std():
    probs = np.eye(8, dtype="float32")[[1, 4]]
    predictions = {head: probs for head in evaluation.HEADS} | {
        "label": np.array([1, 4]), "age": np.array([20.0, 30.0], "float32"),
        "age_std": np.array([2.0, 5.0], "float32")}
    ages = [float(a) for a in range(8)]
    result = evaluation.score(predictions, ages)
    expected = metrics.epsilon_error(metrics.expected_age(probs, ages), [20.0, 30.0], [2.0, 5.0])
    assert result["combined"]["epsilon_error"] == pytest.approx(expected)


def test_the_ten_crop_box_is_the_unmirrored_centre_crops():
    def predict(flat):  # each crop's box holds the crop's index among its face's crops
        n = tf.shape(flat)[0]
        index = tf.cast(tf.range(n) % (n // 2), tf.float32)[:, None]
        probs = tf.fill((n, 3), 1.0 / 3.0)
        return {"probs": probs, "global_probs": probs, "local_probs": probs, "box": tf.tile(index, (1, 4))}

    outputs = evaluation.average_over_crops(predict, tf.zeros((2, 10, 4, 4, 3)))
    np.testing.assert_array_equal(outputs["box"].numpy(), np.full((2, 4), augment.CENTER_CROP, np.float32))
    # The centre and its mirror: the box is the first's, the probabilities the pair's mean.
    outputs = evaluation.average_over_crops(predict, tf.zeros((2, 2, 4, 4, 3)))
    np.testing.assert_array_equal(outputs["box"].numpy(), np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError, match="come 3 to a face"):
        evaluation.average_over_crops(predict, tf.zeros((2, 3, 4, 4, 3)))


def test_frozen_batch_norm_keeps_statistics_while_the_convolutions_learn(tmp_path):
    """--freeze_batch_norm: the global stage still trains the backbone's convolutions, but its
    batch norms normalise with, and keep, their stored statistics and affine."""
    from keras_alage import dlib_import

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
        loss = training.distillation_loss(teacher, student)
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
