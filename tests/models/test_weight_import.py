"""Weights imported from keras-hub's ResNetBackbone give the same feature maps."""

import keras
import numpy as np
import pytest

from keras_alage.models import resnet, weight_import
from keras_alage.models.age_model import ModelConfig, build_age_model

pytest.importorskip("keras_hub", reason="keras-hub is the 'hub' extra; `make test` installs it")


def randomise(model, seed=0):
    """Random weights everywhere, batch-norm statistics included, so parity checks them all."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = layer.get_weights()
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = values
            values = [rng.normal(1, 0.2, gamma.shape), rng.normal(0, 0.2, beta.shape),
                      rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 1.5, var.shape)]
        layer.set_weights([np.asarray(v, "float32") for v in values])


@pytest.mark.slow
@pytest.mark.parametrize("depth", [34, 50])
def test_feature_maps_match_keras_hub(depth):
    hub = weight_import.build_keras_hub_resnet(depth)
    randomise(hub)
    ours = resnet.build_backbone(depth, (None, None, 3))
    report = weight_import.import_keras_hub_backbone(ours, hub)
    assert report.new_in_target == [] and len(report.copied) == len([l for l in hub.layers if l.weights])
    x = np.random.default_rng(1).uniform(-2, 2, (2, 97, 80, 3)).astype("float32")
    expected, got = hub(x).numpy(), ours(x).numpy()
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_ror_import_reports_new_shortcuts_and_starts_as_the_plain_function():
    hub = weight_import.build_keras_hub_resnet(34)
    randomise(hub, seed=2)
    ror2 = resnet.build_backbone(34, (None, None, 3), ror_levels=2)  # root shortcut only: a projection
    report = weight_import.import_keras_hub_backbone(ror2, hub)
    assert report.new_in_target == ["ror_root_bn", "ror_root_conv"]
    assert report.zero_initialised == ["ror_root_bn"]
    x = np.random.default_rng(3).uniform(-2, 2, (1, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(ror2(x).numpy(), hub(x).numpy(), rtol=1e-4, atol=1e-4)


def test_depth_mismatch_is_refused_before_copying():
    hub = weight_import.build_keras_hub_resnet(18)
    ours = resnet.build_backbone(34, (None, None, 3))
    before = ours.get_layer("conv1_conv").get_weights()[0].copy()
    with pytest.raises(ValueError, match="layers only in the target: \\['stack0_block2_1_bn'"):
        weight_import.import_keras_hub_backbone(ours, hub)
    np.testing.assert_array_equal(ours.get_layer("conv1_conv").get_weights()[0], before)


def test_age_model_imports_into_its_backbone():
    model = build_age_model(ModelConfig(depth=18, input_size=64))
    hub = weight_import.build_keras_hub_resnet(18)
    randomise(hub, seed=4)
    weight_import.import_keras_hub_backbone(model, hub)
    np.testing.assert_array_equal(
        model.get_layer("backbone").get_layer("stack3_block1_2_conv").get_weights()[0],
        hub.get_layer("stack3_block1_2_conv").get_weights()[0],
    )
