"""Weights carried between age models: other class spaces, RoR from a ResNet, the local head from
the global head."""

import numpy as np
import pytest

from keras_alage.models import attention, weight_import
from keras_alage.models.age_model import ModelConfig, build_age_model


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


def test_local_head_starts_as_a_copy_of_the_global_head():
    model = build_age_model(ModelConfig(depth=18, input_size=32, age_classes="fgnet"))
    weight_import.local_head_from_global(model)
    for a, b in zip(model.get_layer("global_head").get_weights(), model.get_layer("local_head").get_weights()):
        np.testing.assert_array_equal(a, b)
