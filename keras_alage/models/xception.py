"""face-api's TinyXception (MIT, `@vladmandic/face-api` 1.7.15, `src/xception/TinyXception.ts`) as
a Keras functional backbone, with its age-and-gender heads (`src/ageGenderNet/AgeGenderNet.ts`).

    112x112 RGB -> pixel affine (our ImageNet-normalised input -> face-api's (x - mean) / 255)
    conv 3x3/2 (32) + ReLU                                                  -> 56x56
    reduction block 64 (no leading ReLU), reduction block 128               -> 28, 14
    two main blocks 128 (three ReLU + separable conv, residual)             -> 14
    exit reduction block 256, separable conv 512 + ReLU                     -> 7x7x512
    average pool -> dense 1 (age in years), dense 2 + softmax (male, female)

A reduction block is ReLU, separable conv, ReLU, separable conv, max pool 3x3/2, plus a 1x1/2
convolution of its input; every convolution has a bias and pads "same" as TF.js does. Layer names
follow the weight names of face-api's manifest (`/` -> `_`), so the import is a name map
(`faceapi_import`). The input affine is a frozen 1x1 depthwise convolution: it comes before any
padding, so the network pads in its own normalised space exactly as face-api does.
"""

import keras
from keras import layers

INPUT_SIZE = 112
MAP_SIZE = 7  # the feature map's side at 112 px
MAP_CHANNELS = 512
MAIN_BLOCKS = 2
INPUT_LAYER = "faceapi_input"


def _separable(x, filters: int, name: str):
    return layers.SeparableConv2D(filters, 3, padding="same", name=name)(x)


def _reduction_block(x, filters: int, name: str, activate_input: bool = True):
    shortcut = layers.Conv2D(filters, 1, strides=2, padding="same", name=f"{name}_expansion_conv")(x)
    y = layers.ReLU(name=f"{name}_relu0")(x) if activate_input else x
    y = _separable(y, filters, f"{name}_separable_conv0")
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = _separable(y, filters, f"{name}_separable_conv1")
    y = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool")(y)
    return layers.Add(name=f"{name}_add")([y, shortcut])


def _main_block(x, filters: int, name: str):
    y = x
    for i in range(3):
        y = layers.ReLU(name=f"{name}_relu{i}")(y)
        y = _separable(y, filters, f"{name}_separable_conv{i}")
    return layers.Add(name=f"{name}_add")([y, x])


def build_tiny_xception(input_size: int = INPUT_SIZE, name: str = "backbone") -> keras.Model:
    """ImageNet-normalised images [n, s, s, 3] -> face-api's feature map (7x7x512 at 112 px)."""
    images = keras.Input((input_size, input_size, 3), name="images")
    x = layers.DepthwiseConv2D(1, use_bias=True, trainable=False, name=INPUT_LAYER)(images)
    x = layers.Conv2D(32, 3, strides=2, padding="same", name="entry_flow_conv_in")(x)
    x = layers.ReLU(name="entry_flow_relu")(x)
    x = _reduction_block(x, 64, "entry_flow_reduction_block_0", activate_input=False)
    x = _reduction_block(x, 128, "entry_flow_reduction_block_1")
    for block in range(MAIN_BLOCKS):
        x = _main_block(x, 128, f"middle_flow_main_block_{block}")
    x = _reduction_block(x, 256, "exit_flow_reduction_block")
    x = _separable(x, MAP_CHANNELS, "exit_flow_separable_conv")
    x = layers.ReLU(name="exit_flow_relu")(x)
    return keras.Model(images, x, name=name)


def build_faceapi_age_net(input_size: int = INPUT_SIZE, name: str = "faceapi_age_gender") -> keras.Model:
    """face-api's age-and-gender network: outputs "age" (years, [n]), "gender" ([n, 2]: male,
    female, softmax) and "map" (the backbone's feature map)."""
    backbone = build_tiny_xception(input_size)
    images = keras.Input((input_size, input_size, 3), name="images")
    features = backbone(images)
    pooled = layers.GlobalAveragePooling2D(name="global_pool")(features)
    age = layers.Dense(1, name="fc_age")(pooled)
    age = layers.Reshape((), name="age")(age)
    gender = layers.Dense(2, name="fc_gender")(pooled)
    gender = layers.Softmax(name="gender")(gender)
    return keras.Model(images, {"age": age, "gender": gender, "map": features}, name=name)
