"""Import ResNet weights trained elsewhere into keras-alage backbones.

keras-hub's `ResNetBackbone` (v1, "basic_block" or "bottleneck_block") reads keras-hub
presets and converts timm checkpoints (`ResNetBackbone.from_preset("hf://timm/resnet34.a1_in1k")`),
which is the route to ImageNet weights. Our layers carry the same names, so the import is
a name map checked weight by weight. For an RoR target the extra shortcut projections are
new: their batch-norm scale is set to zero so they add nothing until fine-tuning grows
them, and identity RoR shortcuts (same shape) stay identities (BUILD_NOTES.md).
"""

import dataclasses
from typing import List, Optional, Sequence, Tuple

import keras

from keras_alage.models import age_model, release, resnet, ror
from alage_pipelines import inputs


@dataclasses.dataclass
class ImportReport:
    """What an import did, layer by layer."""

    copied: List[str]
    new_in_target: List[str]  # layers with weights the source does not have (RoR shortcuts)
    zero_initialised: List[str]
    mapped_by_age: List[str] = dataclasses.field(default_factory=list)  # heads copied class by class

    def summary(self) -> str:
        mapped = f"; age heads mapped by age: {', '.join(self.mapped_by_age)}" if self.mapped_by_age else ""
        return (
            f"copied {len(self.copied)} layers; {len(self.new_in_target)} new in target "
            f"({', '.join(self.new_in_target) or 'none'}); zero-initialised "
            f"{', '.join(self.zero_initialised) or 'none'}{mapped}"
        )


def backbone_of(model: keras.Model) -> keras.Model:
    """The ResNet/RoR backbone of an age model, or the model itself if it is one."""
    try:
        return model.get_layer("backbone")
    except ValueError:
        return model


def _weighted_layers(model: keras.Model):
    return {layer.name: layer for layer in model.layers if layer.weights}


def _check_keras_hub_source(source) -> None:
    block_type = getattr(source, "block_type", None)
    if block_type is not None and block_type not in ("basic_block", "bottleneck_block"):
        raise ValueError(
            f"Cannot import a keras-hub ResNet with block_type={block_type!r}: only the v1 "
            "'basic_block' and 'bottleneck_block' layouts match these backbones."
        )
    if getattr(source, "use_pre_activation", False):
        raise ValueError("Cannot import a pre-activation (ResNetV2) keras-hub backbone into a v1 ResNet.")


def import_keras_hub_backbone(target: keras.Model, source: keras.Model, zero_init_ror: bool = True) -> ImportReport:
    """Copies every convolution and batch norm of a keras-hub ResNetBackbone into `target`.

    Args:
      target: an age model (its "backbone" is used) or a backbone from `resnet.build_backbone`.
      source: a built `keras_hub.models.ResNetBackbone` of the same depth.
      zero_init_ror: zero the scale of the target's RoR projection batch norms.

    Raises:
      ValueError: naming the layer, if the architectures differ (depth, block type,
        a weight shape) - nothing is half-imported then, the check runs before copying.
    """
    _check_keras_hub_source(source)
    target = backbone_of(target)
    source_layers = _weighted_layers(source)
    target_layers = _weighted_layers(target)
    new_in_target = sorted(n for n in target_layers if n not in source_layers)
    unexpected_new = [n for n in new_in_target if not n.startswith("ror_")]
    unused_source = sorted(n for n in source_layers if n not in target_layers)
    if unexpected_new or unused_source:
        raise ValueError(
            f"Backbone {target.name!r} and source {source.name!r} differ: layers only in the "
            f"target: {unexpected_new[:5]}{'...' if len(unexpected_new) > 5 else ''}; only in "
            f"the source: {unused_source[:5]}{'...' if len(unused_source) > 5 else ''}. "
            "Build the target with the source's depth."
        )
    pairs = []
    for name, source_layer in source_layers.items():
        values = source_layer.get_weights()
        target_layer = target_layers[name]
        expected = [tuple(w.shape) for w in target_layer.weights]
        received = [tuple(v.shape) for v in values]
        if expected != received:
            raise ValueError(
                f"Layer {name!r}: target weights have shapes {expected}, source has {received}."
            )
        pairs.append((target_layer, values))
    for target_layer, values in pairs:
        target_layer.set_weights(values)
    zeroed = ror.zero_init_projections(target) if zero_init_ror else []
    return ImportReport(sorted(source_layers), new_in_target, zeroed)


def load_keras_hub_preset(target: keras.Model, preset: str, zero_init_ror: bool = True) -> ImportReport:
    """Loads a keras-hub / timm ResNet preset (downloads it) and imports its weights.

    Example presets: "resnet_18_imagenet", "resnet_50_imagenet", "hf://timm/resnet34.a1_in1k".
    """
    try:
        import keras_hub
    except ImportError as error:  # optional dependency
        raise ImportError(
            "Importing a keras-hub preset needs keras-hub: pip install 'keras-alage[hub]'."
        ) from error
    source = keras_hub.models.ResNetBackbone.from_preset(preset)
    return import_keras_hub_backbone(target, source, zero_init_ror=zero_init_ror)


def build_keras_hub_resnet(depth: int, input_shape: Optional[tuple] = None):
    """A randomly initialised keras-hub ResNetBackbone with the layout of `depth`."""
    import keras_hub

    block_type, blocks = resnet.block_spec(depth)
    return keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=list(resnet.STAGE_FILTERS),
        stackwise_num_blocks=list(blocks),
        stackwise_num_strides=list(resnet.STAGE_STRIDES),
        block_type=f"{block_type}_block",
        use_pre_activation=False,
        image_shape=input_shape or (None, None, 3),
    )


def _same_shapes(first, second) -> bool:
    return [w.shape for w in first.weights] == [w.shape for w in second.weights]


def _all_weighted_layers(model: keras.Model):
    """Weighted leaf layers by name, nested models (the backbone) included."""
    found = {}
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if layer.weights and not isinstance(layer, keras.Model):
            found[layer.name] = layer
    return found


AGE_HEADS = ("global_head", "local_head")


def _class_ages(model: keras.Model) -> Optional[Tuple[float, ...]]:
    """The class ages of an age model, or None for a bare backbone."""
    try:
        return age_model.class_ages_of(model)
    except ValueError:
        return None


def map_head_by_age(target, source, target_ages: Sequence[float], source_ages: Sequence[float]) -> bool:
    """Copies a softmax head class by class where every target age is one of the source's.

    A 101-class (0-100) UTKFace or IMDB-WIKI head into a 70-class (0-69) FG-NET head keeps
    the columns for ages 0-69: the new head starts as the source's prediction restricted to
    the target's ages instead of from random weights. False (nothing copied) otherwise.
    """
    index = {age: i for i, age in enumerate(source_ages)}
    if not all(age in index for age in target_ages):
        return False
    kernel, bias = source.get_weights()
    if kernel.shape[0] != target.get_weights()[0].shape[0]:
        return False
    keep = [index[age] for age in target_ages]
    target.set_weights([kernel[:, keep], bias[keep]])
    return True


def transfer_weights(target: keras.Model, source: keras.Model) -> ImportReport:
    """Copies every layer whose name and weight shapes match, from one age model to another.

    The route between stages and data sets: IMDB-WIKI pretraining (101 classes, 0-100) into an
    FG-NET model (70, 0-69) copies the backbone and the attention LSTM and location network,
    and the heads for the ages both class spaces share (`map_head_by_age`); heads whose ages
    the source does not cover stay as initialised. A global-stage model into the attention
    stage copies everything. RoR projections that the source lacks (an RoR initialised from a
    ResNet, as the paper does) start with a zero batch-norm scale, so the new model first
    computes the source's function.
    """
    sources = _all_weighted_layers(source)
    target_ages, source_ages = _class_ages(target), _class_ages(source)
    copied, new, mapped = [], [], []
    for name, layer in _all_weighted_layers(target).items():
        other = sources.get(name)
        if other is not None and name in AGE_HEADS and target_ages and source_ages and target_ages != source_ages:
            (mapped if map_head_by_age(layer, other, target_ages, source_ages) else new).append(name)
        elif other is not None and _same_shapes(other, layer):
            layer.set_weights(other.get_weights())
            copied.append(name)
        else:
            new.append(name)
    if not copied:
        raise ValueError(f"No layer of {source.name!r} matches {target.name!r} by name and shape.")
    backbone = backbone_of(target)
    zeroed = ror.zero_init_projections(backbone, [n for n in ror.projection_layer_names(backbone) if n in new])
    return ImportReport(copied, new, zeroed, mapped)


class CheckpointError(ValueError):
    """A starting checkpoint that cannot be loaded safely: the user's file, named in one line."""


def load_initial_weights(target: keras.Model, path: str) -> ImportReport:
    """Initialises `target` from a saved age model (.keras), a released model's folder
    (`keras_alage.models.release`) or a same-architecture .weights.h5."""

    if release.is_release(path):
        source, _, _ = release.load(path)
        return transfer_weights(target, source)
    if not path.endswith((".weights.h5", ".keras")):
        raise ValueError(f"--init_checkpoint must be a .keras model, a released model's folder or a .weights.h5 "
                         f"file; received {path!r}.")
    inputs.check_regular(path, f"--init_checkpoint={path}")  # NotRegularFile: a pipe is never waited on
    if path.endswith(".weights.h5"):
        target.load_weights(path)
        names = list(_all_weighted_layers(target))
        return ImportReport(names, [], [])
    try:
        source = keras.models.load_model(path, compile=False)
    except (ValueError, TypeError) as error:  # unsafe (a Python lambda), foreign or unregistered parts
        first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise CheckpointError(f"--init_checkpoint={path}: Keras will not load it safely ({first.strip()[:300]})")
    return transfer_weights(target, source)


def local_head_from_global(model: keras.Model) -> None:
    """Starts the local head as a copy of the trained global head.

    The attention stage trains the local head on pooled crops of the same frozen feature map
    the global head reads; from random weights, 6 epochs on FG-NET's 800 faces left it weaker
    than the global head, so P_g + 0.5 P_l fell below P_g (BUILD_NOTES.md). A copy starts it as
    the global head's reading of the crop.
    """
    source, target = model.get_layer("global_head"), model.get_layer("local_head")
    if not _same_shapes(source, target):
        raise ValueError(f"{model.name}: global and local heads differ in shape; cannot copy one into the other.")
    target.set_weights(source.get_weights())
