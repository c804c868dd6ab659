"""RoR (Eq. 2): each level adds exactly the shortcuts it should, from the right places."""

import pytest

from keras_alage.models import resnet
from tests.graph_utils import inbound_layer_names

BLOCKS_34 = (3, 4, 6, 3)


def last_add(stage, blocks=BLOCKS_34):
    return f"stack{stage}_block{blocks[stage] - 1}_add"


def stage_input_layer(stage, blocks=BLOCKS_34):
    return "pool1_pool" if stage == 0 else f"stack{stage - 1}_block{blocks[stage - 1] - 1}_out"


def add_arity(model):
    return {l.name: len(inbound_layer_names(model, l.name)) for l in model.layers if l.name.endswith("_add")}


def test_level_1_is_plain_resnet():
    model = resnet.build_backbone(34, (64, 64, 3), ror_levels=1)
    assert not [l.name for l in model.layers if l.name.startswith("ror_")]
    assert set(add_arity(model).values()) == {2}


def test_level_2_adds_only_the_root_shortcut_at_the_end():
    model = resnet.build_backbone(34, (64, 64, 3), ror_levels=2)
    arity = add_arity(model)
    assert arity.pop(last_add(3)) == 3
    assert set(arity.values()) == {2}
    # g(x_1): projection from the first stage's input (64 ch, 16 px) to 512 ch, stride 8.
    assert "ror_root_bn" in inbound_layer_names(model, last_add(3))
    assert inbound_layer_names(model, "ror_root_conv") == ["pool1_pool"]
    assert model.get_layer("ror_root_conv").strides == (8, 8)


def test_level_3_adds_middle_shortcuts_across_every_stage():
    model = resnet.build_backbone(34, (64, 64, 3), ror_levels=3)
    arity = add_arity(model)
    assert [arity.pop(last_add(s)) for s in range(4)] == [3, 3, 3, 4]
    assert set(arity.values()) == {2}, "blocks inside a stage keep their single shortcut"
    # Stage 0 keeps 64 channels and resolution: its middle shortcut is the identity.
    assert "pool1_pool" in inbound_layer_names(model, last_add(0))
    for stage in (1, 2, 3):
        assert f"ror_stack{stage}_bn" in inbound_layer_names(model, last_add(stage))
        assert inbound_layer_names(model, f"ror_stack{stage}_conv") == [stage_input_layer(stage)]
    assert "ror_root_bn" in inbound_layer_names(model, last_add(3))


def test_ror_shortcuts_join_before_the_relu():
    model = resnet.build_backbone(18, (64, 64, 3), ror_levels=3)
    assert inbound_layer_names(model, "stack3_block1_out") == ["stack3_block1_add"]


@pytest.mark.parametrize("levels, extra_layers", [(2, 2), (3, 10)])
def test_bottleneck_ror_projects_every_shape_change(levels, extra_layers):
    # ResNet-50 widens stage 0 to 256 channels, so even its middle shortcut projects.
    model = resnet.build_backbone(50, (64, 64, 3), ror_levels=levels)
    assert len([l for l in model.layers if l.name.startswith("ror_")]) == extra_layers
