"""The full AL-ResNet / AL-RoR age estimator as one Keras functional model.

    images -> backbone (ResNet or RoR) -> feature map
      global: average pool -> global head -> P_global
      attention: LSTM -> box -> crop the feature map -> pool -> local head -> P_local
      P = (P_global + lambda P_local) / (1 + lambda); age = E[age | P]

Outputs, by name: "age", "probs", "global_probs", "global_age", "local_probs",
"local_age" and "box" ((x, y, w, h): the region the attention crop samples, as fractions of
the input image; `attention.InputFrameBox`).
"""

import dataclasses
from typing import Optional, Sequence, Tuple

import keras
from keras import layers

from keras_alage.models import attention, heads, resnet, xception
from keras_alage.models.options import LAYOUTS
from alage_pipelines.age_classes import AgeClasses, get_age_classes

OUTPUT_NAMES = ("age", "probs", "global_probs", "global_age", "local_probs", "local_age", "box")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What defines an age model; the defaults are the paper's AL-ResNet-34.

    `layout` "dlib" is the layout of dlib's CC0 age network (`resnet.build_dlib_backbone`;
    `depth` and `ror_levels` do not apply), which its imported weights need to keep their
    function; "faceapi" face-api's TinyXception (`xception.build_tiny_xception`, likewise);
    "torch" is the paper's ResNet / RoR of `depth`. `box`: the attention box's parametrisation
    (`attention.BOX_KINDS`; "bounded" the paper's sigmoids, "movable" `attention.MovableBox`)."""

    depth: int = 34
    ror_levels: int = 1
    input_size: int = 224
    age_classes: str = "fgnet"
    local_weight: float = 0.5
    lstm_units: int = 128
    crop_size: Tuple[int, int] = (7, 7)
    min_box_size: float = 1.0 / 7.0
    max_box_size: float = 1.0
    layout: str = "torch"
    box: str = "bounded"

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}; received {self.layout!r}.")
        if self.box not in attention.BOX_KINDS:
            raise ValueError(f"box must be one of {attention.BOX_KINDS}; received {self.box!r}.")
        if self.layout != "torch" and self.ror_levels != 1:
            raise ValueError("RoR shortcuts (ror_levels > 1) are defined for the torch layout only.")

    def classes(self) -> AgeClasses:
        return get_age_classes(self.age_classes)


def build_age_model(
    config: Optional[ModelConfig] = None,
    class_ages: Optional[Sequence[float]] = None,
    name: Optional[str] = None,
) -> keras.Model:
    """Builds the age estimator.

    Args:
      config: architecture and class space; defaults to AL-ResNet-34 on FG-NET's 70 ages.
      class_ages: overrides the class values of `config.age_classes` (a user's own
        class space, e.g. 5-year bins).
      name: model name; defaults to "al_resnet34" / "al_ror3_34".
    """
    config = config or ModelConfig()
    if config.input_size < 32:
        raise ValueError(f"input_size must be at least 32 px; received {config.input_size}.")
    shape = (config.input_size, config.input_size, 3)
    if config.layout == "dlib":
        backbone = resnet.build_dlib_backbone(shape, name="backbone")
    elif config.layout == "faceapi":
        backbone = xception.build_tiny_xception(config.input_size, name="backbone")
    else:
        backbone = resnet.build_backbone(config.depth, shape, ror_levels=config.ror_levels, name="backbone")
    images = keras.Input(shape, name="images")
    if name is None:
        arch = f"resnet{config.depth}" if config.ror_levels == 1 else f"ror{config.ror_levels}_{config.depth}"
        arch = {"dlib": "dlib_resnet", "faceapi": "faceapi_xception"}.get(config.layout, arch)
        name = f"al_{arch}"
    return keras.Model(images, _outputs(backbone(images), config, class_ages), name=name)


def build_map_model(config: ModelConfig, map_shape: Sequence[int], class_ages: Optional[Sequence[float]] = None,
                    name: str = "al_on_map") -> keras.Model:
    """The heads and the attention branch of `build_age_model` on a backbone's feature map
    [h, w, c] as input (its "backbone" an identity): the same layers by name, so weights move
    between the two. For stages that keep the backbone frozen on fixed views of each face, whose
    maps can then be computed once (`studies.map_evidence`)."""
    maps = keras.Input(tuple(map_shape), name="images")
    identity = keras.Model(maps, layers.Identity(name="map")(maps), name="backbone")
    return keras.Model(maps, _outputs(identity(maps), config, class_ages), name=name)


def _outputs(features, config: ModelConfig, class_ages: Optional[Sequence[float]]) -> dict:
    """The global head, the attention branch and their combination on a feature map."""
    ages = list(class_ages) if class_ages is not None else list(config.classes().values)
    pooled = layers.GlobalAveragePooling2D(name="global_pool")(features)
    global_probs = heads.apply_softmax_head(pooled, len(ages), name="global_head")
    branch = attention.apply_attention_branch(
        features,
        len(ages),
        lstm_units=config.lstm_units,
        crop_size=config.crop_size,
        min_box_size=config.min_box_size,
        max_box_size=config.max_box_size,
        pooled=pooled,
        box_kind=config.box,
    )
    local_probs = branch["local_probs"]
    probs = heads.CombinePredictions(config.local_weight, dtype="float32", name="combined_probs")(
        [global_probs, local_probs]
    )
    return {
        "age": heads.ExpectedAge(ages, dtype="float32", name="age")(probs),
        "probs": probs,
        "global_probs": global_probs,
        "global_age": heads.ExpectedAge(ages, dtype="float32", name="global_age")(global_probs),
        "local_probs": local_probs,
        "local_age": heads.ExpectedAge(ages, dtype="float32", name="local_age")(local_probs),
        "box": branch["input_box"],
    }


def class_ages_of(model: keras.Model) -> Tuple[float, ...]:
    """The age value of each class, as stored in the model's expected-age layer."""
    return tuple(model.get_layer("age").class_ages)


def trained_heads(model: keras.Model) -> Tuple[str, ...]:
    """Heads the model's training stages trained ("global", and "local" after the attention stage)."""
    return tuple(model.get_layer("combined_probs").trained_heads)


def set_trained_heads(model: keras.Model, names: Sequence[str]) -> None:
    """Records which heads answer: "age" and "probs" combine only trained heads.

    Set before tracing or saving: compiled graphs read it when they are traced."""
    model.get_layer("combined_probs").trained_heads = heads.check_heads(names)


UNTRAINED_LOCAL_OUTPUTS = ("local_age", "local_probs", "box")


def mask_untrained(outputs: dict, heads: Sequence[str]) -> dict:
    """Outputs with those of an untrained local head (its age, probabilities and box) set to NaN,
    so no answer, file or drawing can show them as if they meant something."""
    if "local" in heads:
        return outputs
    import tensorflow as tf

    masked = dict(outputs)
    for key in UNTRAINED_LOCAL_OUTPUTS:
        if key in masked:
            value = tf.convert_to_tensor(masked[key])
            masked[key] = tf.fill(tf.shape(value), tf.constant(float("nan"), value.dtype))
    return masked
