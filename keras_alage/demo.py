"""The demo job: one model, one real photo, one printed prediction."""

import os
import pathlib
from typing import Optional

import keras

from keras_alage import inference
from keras_alage.model import ModelConfig, build_age_model

DEFAULT_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


def default_image() -> pathlib.Path:
    """The first FG-NET photo of the shared data (ALAGE_SHARED_DATA overrides its folder)."""
    root = pathlib.Path(os.environ.get("ALAGE_SHARED_DATA", DEFAULT_DATA))
    images = sorted((root / "fgnet" / "images").glob("*.JPG"))
    if not images:
        raise FileNotFoundError(
            f"No --image given and no FG-NET photos under {root / 'fgnet' / 'images'}; "
            "pass --image=PATH or set ALAGE_SHARED_DATA."
        )
    return images[0]


def load_model(config: ModelConfig, weights: Optional[str]) -> keras.Model:
    """`weights`: a released model's folder, a .keras model, a .weights.h5 file for `config`, or
    "untrained" for a random network of `config` (which shows that the model runs, nothing more)."""
    from keras_alage import release

    if weights and release.is_release(weights):
        return release.load(weights)[0]
    if weights and weights.endswith(".keras"):
        return keras.models.load_model(weights)
    model = build_age_model(config)
    if weights and weights != "untrained":
        model.load_weights(weights)
    return model


def run(
    image: Optional[str] = None,
    depth: int = 34,
    ror_levels: int = 1,
    input_size: int = 224,
    age_classes: str = "fgnet",
    weights: Optional[str] = None,
    top_k: int = 5,
) -> str:
    """Predicts one image and returns the report text."""
    from pipelines import images as image_io

    from keras_alage import model as model_lib

    config = ModelConfig(depth=depth, ror_levels=ror_levels, input_size=input_size, age_classes=age_classes)
    path = pathlib.Path(image) if image else default_image()
    model = load_model(config, weights)
    size = model.input_shape[1]
    batch = image_io.load_for_model(path, size)[None]
    outputs = inference.predict(model, batch)
    labels = [f"{a:g}" for a in model_lib.class_ages_of(model)]
    header = (
        f"{model.name} ({model.count_params():,} parameters, {size} px input"
        f"{', untrained' if weights in (None, 'untrained') else ''}) on {path}"
    )
    return header + "\n" + inference.describe(outputs, 0, labels, top_k)
