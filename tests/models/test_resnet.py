import numpy as np
import pytest

from keras_alage.models import resnet

# torchvision's parameter counts for the ImageNet classifiers.
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_imagenet_classifier_parameter_counts(depth):
    assert trainable_count(resnet.build_classifier(depth, 1000)) == TORCHVISION_PARAMS[depth]


def test_resnet34_feature_map_is_7x7x512_at_224():
    backbone = resnet.build_backbone(34, (224, 224, 3))
    assert tuple(backbone.output.shape) == (None, 7, 7, 512)
    assert resnet.feature_channels(34) == 512 and resnet.feature_channels(50) == 2048


def test_odd_input_sizes_follow_torch_arithmetic():
    # Torch: each stride-2 stage maps n -> ceil(n / 2); stem maps n -> ceil(ceil(n / 2) / 2).
    backbone = resnet.build_backbone(18, (97, 80, 3))
    assert tuple(backbone.output.shape[1:3]) == (4, 3)


def test_invalid_arguments_say_what_was_received():
    with pytest.raises(ValueError, match="Unsupported ResNet depth 20"):
        resnet.build_backbone(20)
    with pytest.raises(ValueError, match=r"received \(64, 64, 1\)"):
        resnet.build_backbone(18, (64, 64, 1))
    with pytest.raises(ValueError, match="ror_levels must be 1"):
        resnet.build_backbone(18, ror_levels=4)
