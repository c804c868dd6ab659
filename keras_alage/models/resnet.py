"""ResNet-18/34/50/101/152 backbones as Keras functional models, with optional RoR shortcuts.

The layout is torchvision's ResNet v1 (stride on the 3x3 convolution of bottleneck
blocks, projection shortcuts where shapes change) with explicit zero padding before
strided convolutions, because TensorFlow's "same" padding is asymmetric for even inputs
and would shift every feature map against weights trained in Torch. Layer names follow
keras-hub's ResNetBackbone (`conv1_conv`, `stack0_block0_1_conv`, ...), so importing its
weights, or weights it converted from timm, is a name map (see `weight_import.py`).
"""

from typing import Optional, Sequence, Tuple

import keras
from keras import layers

from keras_alage.models import ror
from keras_alage.models.batch_norm import FusedBatchNormalization

# depth -> (block type, blocks per stage)
RESNET_SPECS = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
STAGE_FILTERS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)
BN_EPSILON = 1e-5  # Torch's default; weights trained in Torch expect it.
BN_MOMENTUM = 0.9  # Torch momentum 0.1 in Keras terms.


def block_spec(depth: int) -> Tuple[str, Tuple[int, ...]]:
    """Block type ("basic" or "bottleneck") and blocks per stage of a ResNet depth."""
    if depth not in RESNET_SPECS:
        raise ValueError(
            f"Unsupported ResNet depth {depth}; expected one of {sorted(RESNET_SPECS)}."
        )
    return RESNET_SPECS[depth]


def feature_channels(depth: int) -> int:
    """Channels of the last feature map: 512 for basic blocks, 2048 for bottlenecks."""
    block_type, _ = block_spec(depth)
    return STAGE_FILTERS[-1] * (4 if block_type == "bottleneck" else 1)


def batch_norm(x, name: str, gamma_initializer="ones"):
    """Batch norm with Torch's epsilon and momentum, on TensorFlow's fused kernel."""
    return FusedBatchNormalization(
        epsilon=BN_EPSILON,
        momentum=BN_MOMENTUM,
        gamma_initializer=gamma_initializer,
        name=name,
    )(x)


def conv(x, filters: int, kernel_size: int, stride: int, name: str):
    """Convolution without bias; strided ones pad explicitly like Torch (`{name}` -> `_pad`)."""
    if stride > 1 and kernel_size > 1:
        x = layers.ZeroPadding2D((kernel_size - 1) // 2, name=name.replace("_conv", "_pad"))(x)
        padding = "valid"
    else:
        padding = "same" if kernel_size > 1 else "valid"
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=stride,
        padding=padding,
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
    )(x)


def apply_stem(x):
    """7x7/2 convolution, BN, ReLU and 3x3/2 max pool: 224 px in, 56 px out."""
    x = conv(x, 64, 7, 2, name="conv1_conv")
    x = batch_norm(x, "conv1_bn")
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def _merge(shortcut, residual, extra_shortcuts: Sequence, name: str):
    """y = h(x) + F(x) [+ g(...) RoR shortcuts], then ReLU (Eq. 1 and 2 of the paper)."""
    x = layers.Add(name=f"{name}_add")([shortcut, residual, *extra_shortcuts])
    return layers.Activation("relu", name=f"{name}_out")(x)


def apply_basic_block(x, filters, stride=1, conv_shortcut=False, extra_shortcuts=(), name=None):
    """Two 3x3 convolutions with an identity or projection shortcut."""
    shortcut = x
    if conv_shortcut:
        shortcut = conv(x, filters, 1, stride, name=f"{name}_0_conv")
        shortcut = batch_norm(shortcut, f"{name}_0_bn")
    y = conv(x, filters, 3, stride, name=f"{name}_1_conv")
    y = batch_norm(y, f"{name}_1_bn")
    y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = conv(y, filters, 3, 1, name=f"{name}_2_conv")
    y = batch_norm(y, f"{name}_2_bn")
    return _merge(shortcut, y, extra_shortcuts, name)


def apply_bottleneck_block(x, filters, stride=1, conv_shortcut=False, extra_shortcuts=(), name=None):
    """1x1 reduce, 3x3 (strided), 1x1 expand to 4*filters, with a shortcut."""
    shortcut = x
    if conv_shortcut:
        shortcut = conv(x, 4 * filters, 1, stride, name=f"{name}_0_conv")
        shortcut = batch_norm(shortcut, f"{name}_0_bn")
    y = conv(x, filters, 1, 1, name=f"{name}_1_conv")
    y = batch_norm(y, f"{name}_1_bn")
    y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = conv(y, filters, 3, stride, name=f"{name}_2_conv")
    y = batch_norm(y, f"{name}_2_bn")
    y = layers.Activation("relu", name=f"{name}_2_relu")(y)
    y = conv(y, 4 * filters, 1, 1, name=f"{name}_3_conv")
    y = batch_norm(y, f"{name}_3_bn")
    return _merge(shortcut, y, extra_shortcuts, name)


def build_backbone(
    depth: int = 34,
    input_shape: Tuple[Optional[int], Optional[int], int] = (224, 224, 3),
    ror_levels: int = 1,
    name: Optional[str] = None,
) -> keras.Model:
    """A ResNet (ror_levels=1) or RoR-2/RoR-3 feature extractor.

    Args:
      depth: 18, 34, 50, 101 or 152.
      input_shape: image shape without batch; spatial sizes may be None.
      ror_levels: 1 = plain ResNet (final-level shortcuts only), 2 = plus the
        root-level shortcut, 3 = plus a middle-level shortcut across each stage.
      name: model name; defaults to "resnet{depth}" or "ror{levels}_{depth}".

    Returns:
      A functional model mapping images to the last stage's feature map
      (7x7x512 for a 224 px ResNet-34).
    """
    block_type, stage_blocks = block_spec(depth)
    ror.validate_levels(ror_levels)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (height, width, 3); received {input_shape}.")
    apply_block = apply_bottleneck_block if block_type == "bottleneck" else apply_basic_block
    expansion = 4 if block_type == "bottleneck" else 1

    images = keras.Input(shape=input_shape, name="images")
    x = apply_stem(images)
    root_input = x
    plan = ror.ShortcutPlan(ror_levels, num_stages=len(stage_blocks))
    for stage, num_blocks in enumerate(stage_blocks):
        stage_input = x
        out_filters = STAGE_FILTERS[stage] * expansion
        for block in range(num_blocks):
            is_last = block == num_blocks - 1
            extras = plan.extra_shortcuts(
                stage=stage,
                stage_input=stage_input,
                root_input=root_input,
                out_filters=out_filters,
                stage_stride=STAGE_STRIDES[stage],
                root_stride=_product(STAGE_STRIDES),
                batch_norm=batch_norm,
                conv=conv,
            ) if is_last else ()
            # keras-hub/torchvision: basic blocks project only when the shape changes,
            # bottleneck blocks always project in the first block of a stage.
            conv_shortcut = block == 0 and (block_type == "bottleneck" or stage > 0)
            x = apply_block(
                x,
                STAGE_FILTERS[stage],
                stride=STAGE_STRIDES[stage] if block == 0 else 1,
                conv_shortcut=conv_shortcut,
                extra_shortcuts=extras,
                name=f"stack{stage}_block{block}",
            )
    if name is None:
        name = f"resnet{depth}" if ror_levels == 1 else f"ror{ror_levels}_{depth}"
    return keras.Model(images, x, name=name)


# dlib's age network (`dlib_import.py`): stem, then stages of 64 x 1, 128 x 2, 256 x 2 basic blocks.
DLIB_STAGES = ((64, 1), (128, 2), (256, 2))


@keras.saving.register_keras_serializable(package="keras_alage")
class ZeroPadAdd(layers.Layer):
    """dlib's `add_prev`: the sum of two maps, the smaller zero-padded at the end (bottom,
    right, last channels) to the larger's shape. Its downsampling blocks add an average-pooled
    input with too few channels (and, on even maps, one row and column more) to the residual."""

    def call(self, inputs):
        from keras import ops

        shape = [max(dims) for dims in zip(*(tuple(x.shape[1:]) for x in inputs))]
        padded = [ops.pad(x, [[0, 0]] + [[0, t - s] for s, t in zip(x.shape[1:], shape)]) for x in inputs]
        return ops.add(*padded) if len(padded) == 2 else sum(padded[1:], padded[0])

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0],) + tuple(max(dims) for dims in zip(*(s[1:] for s in input_shapes)))


def apply_dlib_block(x, filters: int, stride: int, name: str):
    """dlib's residual block: its strided 3x3 convolution is unpadded, and its downsampling
    shortcut is a 2x2 average pool plus zero channels (`ZeroPadAdd`)."""
    if stride == 1:
        y = conv(x, filters, 3, 1, name=f"{name}_1_conv")
        shortcut = x
    else:
        y = layers.Conv2D(filters, 3, strides=stride, padding="valid", use_bias=False,
                          kernel_initializer="he_normal", name=f"{name}_1_conv")(x)
        shortcut = layers.AveragePooling2D(2, strides=2, padding="valid", name=f"{name}_0_pool")(x)
    y = batch_norm(y, f"{name}_1_bn")
    y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = conv(y, filters, 3, 1, name=f"{name}_2_conv")
    y = batch_norm(y, f"{name}_2_bn")
    x = ZeroPadAdd(name=f"{name}_add")([shortcut, y])
    return layers.Activation("relu", name=f"{name}_out")(x)


def build_dlib_backbone(input_shape=(64, 64, 3), name: str = "dlib_resnet") -> keras.Model:
    """The layout of dlib's age network, so its weights keep their function exactly
    (`dlib_import.import_dlib_age`): 7x7/2 and 3x3/2 max pool without padding, then
    `DLIB_STAGES`. A 64 px input (dlib's) gives a 3x3x256 feature map."""
    images = keras.Input(shape=input_shape, name="images")
    x = layers.Conv2D(64, 7, strides=2, padding="valid", use_bias=False, kernel_initializer="he_normal",
                      name="conv1_conv")(images)
    x = batch_norm(x, "conv1_bn")
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="pool1_pool")(x)
    for stage, (filters, blocks) in enumerate(DLIB_STAGES):
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            x = apply_dlib_block(x, filters, stride, name=f"stack{stage}_block{block}")
    return keras.Model(images, x, name=name)


def build_classifier(
    depth: int = 34,
    num_classes: int = 1000,
    input_shape=(224, 224, 3),
    ror_levels: int = 1,
) -> keras.Model:
    """Backbone + global average pool + softmax, the ImageNet-style classifier."""
    backbone = build_backbone(depth, input_shape, ror_levels, name="backbone")
    features = layers.GlobalAveragePooling2D(name="avg_pool")(backbone.output)
    probs = layers.Dense(num_classes, activation="softmax", name="predictions")(features)
    return keras.Model(backbone.input, probs, name=f"{backbone.name}_classifier")


def _product(values):
    result = 1
    for v in values:
        result *= v
    return result
