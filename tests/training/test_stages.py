import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.training import stages


def snapshot(layer):
    return [w.numpy().copy() for w in layer.weights]


def changed(before, after):
    return any(np.abs(a - b).max() > 0 for a, b in zip(before, after))


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (4, 64, 64, 3)).astype("float32"), np.array([3, 10, 25, 60])



def sgd_step(model, optimizer, images, labels, stage: str):
    """One plain gradient step on the stage's loss over the trainable variables (the trainer's
    own step, with weight decay and distribution, is tested in test_loop.py)."""
    with tf.GradientTape() as tape:
        loss = stages.stage_loss(model(images, training=True), labels, stage)
    variables = model.trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss


def test_attention_stage_trains_only_the_branch(batch):
    model = build_age_model(ModelConfig(depth=18, input_size=64))
    stages.set_training_stage(model, "attention")
    frozen = {n: snapshot(model.get_layer(n)) for n in ("backbone", "global_head")}
    branch = {n: snapshot(model.get_layer(n)) for n in ("attention_lstm", "attention_location", "local_head")}
    sgd_step(model, keras.optimizers.SGD(0.1), *batch, stage="attention")
    for name, before in frozen.items():
        # All weights, batch-norm moving statistics included, must stay as they were.
        assert not changed(before, snapshot(model.get_layer(name))), name
    for name, before in branch.items():
        assert changed(before, snapshot(model.get_layer(name))), name


def test_global_stage_trains_backbone_and_global_head_only(batch):
    model = build_age_model(ModelConfig(depth=18, input_size=64))
    stages.set_training_stage(model, "global")
    trained = {n: snapshot(model.get_layer(n)) for n in ("backbone", "global_head")}
    location = snapshot(model.get_layer("attention_location"))
    local_head = snapshot(model.get_layer("local_head"))
    lstm = snapshot(model.get_layer("attention_lstm"))  # its kernels and its carried memory
    sgd_step(model, keras.optimizers.SGD(0.1), *batch, stage="global")
    for name, before in trained.items():
        assert changed(before, snapshot(model.get_layer(name))), name
    assert not changed(location, snapshot(model.get_layer("attention_location")))
    assert not changed(local_head, snapshot(model.get_layer("local_head")))
    assert not changed(lstm, snapshot(model.get_layer("attention_lstm"))), "the global stage wrote the LSTM memory"


def test_attention_stage_writes_the_memory(batch):
    model = build_age_model(ModelConfig(depth=18, input_size=64))
    stages.set_training_stage(model, "attention")
    sgd_step(model, keras.optimizers.SGD(0.1), *batch, stage="attention")
    assert np.abs(model.get_layer("attention_lstm").hidden_state.numpy()).max() > 0


def test_heads_trained_by_each_stage():
    assert stages.heads_trained_by("global") == ("global",)
    assert stages.heads_trained_by("attention") == ("global", "local")


def test_stage_loss_is_the_cross_entropy_of_the_stage_output():
    outputs = {"global_probs": np.array([[0.25, 0.75]], "float32"), "local_probs": np.array([[0.5, 0.5]], "float32")}
    assert float(stages.stage_loss(outputs, np.array([1]), "global")) == pytest.approx(-np.log(0.75), rel=1e-5)
    assert float(stages.stage_loss(outputs, np.array([1]), "attention")) == pytest.approx(-np.log(0.5), rel=1e-5)


def test_a_model_without_the_branch_trains_its_global_stage_and_not_the_attention_stage():
    model = build_age_model(ModelConfig(depth=18, input_size=32, age_classes="adience"))
    global_only = keras.Model(model.input, {"global_probs": model.get_layer("global_head").output})
    stages.set_training_stage(global_only, "global")  # nothing to freeze: no branch
    assert global_only.get_layer("backbone").trainable and global_only.get_layer("global_head").trainable
    with pytest.raises(ValueError, match="has no layer 'attention_lstm'"):
        stages.set_training_stage(global_only, "attention")


def test_unknown_stage_is_named():
    with pytest.raises(ValueError, match="Unknown training stage 'local'"):
        stages.stage_spec("local")


@pytest.mark.parametrize("stage,trains,loss_output", [
    ("global_head", ("global_head",), "global_probs"),
    ("local_head", ("local_head",), "local_probs"),
])
def test_the_control_stages_train_one_head_on_the_frozen_network(batch, stage, trains, loss_output):
    model = build_age_model(ModelConfig(depth=18, input_size=64))
    spec = stages.set_training_stage(model, stage)
    assert spec.loss_output == loss_output
    names = ("backbone", "global_head", "attention_lstm", "attention_location", "local_head")
    before = {n: snapshot(model.get_layer(n)) for n in names}
    sgd_step(model, keras.optimizers.SGD(0.1), *batch, stage=stage)
    for name in names:
        assert changed(before[name], snapshot(model.get_layer(name))) == (name in trains), name
    assert stages.heads_trained_by(stage) == (("global",) if stage == "global_head" else ("global", "local"))
