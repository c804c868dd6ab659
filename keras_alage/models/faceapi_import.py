"""face-api's age-and-gender network (MIT) read offline from its npm package into `xception`'s layout.

`@vladmandic/face-api` 1.7.15 ships `model/age_gender_model.bin` with
`age_gender_model-weights_manifest.json`: TF.js weights, each tensor stored as uint8 and
dequantised as q * scale + min (float32 where the manifest gives no quantisation). The import
is a name map: every tensor of the manifest fills exactly one Keras weight of the same shape,
and the input affine turns our ImageNet-normalised pixels into face-api's (x - mean) / 255.
The result computes face-api's network to float rounding (tested against the package's own
TF.js forward pass, `tools/face-api/reference.js`).

What the package does before the network, and `faceapi_input` reproduces: the face's
rectangle (`alignedRect`: the 68 landmarks' bounding box enlarged by 20 %) is cut, padded with
black to a square (centred), resized bilinearly to 112 px without half-pixel centres.
"""

import dataclasses
import io
import json
import os
import tarfile
from typing import Dict, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from keras_alage.models import npm_packages, xception
from alage_pipelines.images import IMAGENET_MEAN, IMAGENET_STD

PACKAGE = "@vladmandic/face-api"
VERSION = "1.7.15"
MANIFEST = "age_gender_model-weights_manifest.json"
FACEAPI_MEAN = np.array([122.782, 117.001, 104.298], np.float32)  # RGB, on bytes; then / 255
INSTALL_HINT = f"npm ci --prefix tools/face-api (installs {PACKAGE}@{VERSION}), or npm pack {PACKAGE}@{VERSION}"
# Keras weight (layer, attribute) of each face-api tensor suffix.
_SUFFIXES = {
    "filters": "kernel", "bias": "bias", "weights": "kernel",
    "depthwise_filter": "depthwise_kernel", "pointwise_filter": "pointwise_kernel",
}


@dataclasses.dataclass
class FaceApiWeights:
    tensors: Dict[str, np.ndarray]  # face-api's names ("entry_flow/conv_in/filters") -> float32
    source: str


def find_model(path: Optional[str] = None) -> str:
    """The weights' source: `path` (the package's model folder, the package folder, or the .tgz
    that `npm pack` writes), else $ALAGE_FACEAPI_MODEL, else the installed package; "installed"
    means the last two only. Raises FileNotFoundError saying how to get it."""
    return npm_packages.find_model(path, "ALAGE_FACEAPI_MODEL", PACKAGE, "model", MANIFEST, "face-api's age network",
                                   INSTALL_HINT)


def _read_files(source: str) -> Tuple[list, Dict[str, bytes]]:
    """(manifest, {file name: bytes}) from a model folder or an npm .tgz."""
    if os.path.isdir(source):
        with open(os.path.join(source, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
        blobs = {}
        for group in manifest:
            for name in group["paths"]:
                with open(os.path.join(source, os.path.basename(name)), "rb") as f:
                    blobs[name] = f.read()
        return manifest, blobs
    with tarfile.open(source) as archive:
        def member(name):
            handle = archive.extractfile(f"package/model/{os.path.basename(name)}")
            if handle is None:
                raise ValueError(f"{source}: no package/model/{name}; expected {PACKAGE}@{VERSION}.")
            return handle.read()
        try:
            manifest = json.load(io.BytesIO(member(MANIFEST)))
            return manifest, {name: member(name) for group in manifest for name in group["paths"]}
        except KeyError as error:
            raise ValueError(f"{source}: {error}; expected {PACKAGE}@{VERSION}'s npm archive.") from None


def dequantise(raw: bytes, spec: dict) -> np.ndarray:
    """One manifest entry's values in float32: uint8 q -> q * scale + min, or float32 as stored."""
    shape = tuple(spec["shape"])
    quantisation = spec.get("quantization")
    if quantisation is None:
        if spec["dtype"] != "float32":
            raise ValueError(f"{spec['name']}: dtype {spec['dtype']!r} without quantisation is not face-api's.")
        return np.frombuffer(raw, "<f4").reshape(shape).copy()
    if quantisation["dtype"] != "uint8":
        raise ValueError(f"{spec['name']}: {quantisation['dtype']} quantisation; face-api's age net uses uint8.")
    q = np.frombuffer(raw, np.uint8).astype(np.float32)
    return (q * np.float32(quantisation["scale"]) + np.float32(quantisation["min"])).reshape(shape)


def _entry_bytes(spec: dict) -> int:
    itemsize = 1 if spec.get("quantization") else 4
    return int(np.prod(spec["shape"], dtype=np.int64)) * itemsize


def read_faceapi_age_net(path: Optional[str] = None) -> FaceApiWeights:
    """Every tensor of the manifest, dequantised, checked against the size of its binary file."""
    source = find_model(path)
    manifest, blobs = _read_files(source)
    tensors = {}
    for group in manifest:
        data = b"".join(blobs[name] for name in group["paths"])
        offset = 0
        for spec in group["weights"]:
            size = _entry_bytes(spec)
            if offset + size > len(data):
                raise ValueError(f"{source}: {spec['name']} runs past the end of its weights file; the file is "
                                 "truncated or not this manifest's.")
            tensors[spec["name"]] = dequantise(data[offset : offset + size], spec)
            offset += size
        if offset != len(data):
            raise ValueError(f"{source}: {len(data) - offset} bytes left after the manifest's tensors.")
    return FaceApiWeights(tensors, source)


def keras_target(name: str) -> Tuple[str, str]:
    """face-api tensor name -> (our layer name, weight attribute)."""
    scope, _, suffix = name.rpartition("/")
    if suffix not in _SUFFIXES:
        raise ValueError(f"face-api tensor {name!r} has no counterpart in the Keras layout.")
    return scope.replace("/", "_"), _SUFFIXES[suffix]


def input_affine() -> Tuple[np.ndarray, np.ndarray]:
    """(kernel [1, 1, 3, 1], bias [3]): ImageNet-normalised z -> (255 (std z + mean) - m) / 255."""
    kernel = IMAGENET_STD.reshape(1, 1, 3, 1).astype(np.float32)
    bias = (IMAGENET_MEAN - FACEAPI_MEAN / 255.0).astype(np.float32)
    return kernel, bias


def import_faceapi_age(model: keras.Model, weights: Optional[FaceApiWeights] = None,
                       path: Optional[str] = None) -> FaceApiWeights:
    """Writes face-api's weights into `xception.build_faceapi_age_net` (or a bare backbone, which
    then takes every backbone tensor and leaves the heads out). Every tensor must find its weight
    and every weight its tensor; shapes are checked before anything is written."""
    weights = weights or read_faceapi_age_net(path)
    try:
        backbone = model.get_layer("backbone")
    except ValueError:
        backbone = model
    layers_by_name = {layer.name: layer for layer in backbone.layers}
    layers_by_name.update({layer.name: layer for layer in model.layers})
    assignments = []
    for name, value in weights.tensors.items():
        layer_name, attribute = keras_target(name)
        layer = layers_by_name.get(layer_name)
        if layer is None:
            if layer_name.startswith("fc_") and backbone is model:
                continue
            raise ValueError(f"{model.name}: no layer {layer_name!r} for face-api's {name}.")
        variable = getattr(layer, attribute)
        if tuple(variable.shape) != value.shape:
            raise ValueError(f"{layer_name}.{attribute}: shape {tuple(variable.shape)}, face-api's {name} has "
                             f"{value.shape}.")
        assignments.append((variable, value))
    kernel, bias = input_affine()
    affine = backbone.get_layer(xception.INPUT_LAYER)
    assignments += [(affine.kernel, kernel), (affine.bias, bias)]
    assigned = {id(v) for v, _ in assignments}
    left = [v.path for layer in backbone.layers for v in layer.weights if id(v) not in assigned]
    if left:
        raise ValueError(f"{model.name}: weights face-api does not have: {left[:3]}.")
    for variable, value in assignments:
        variable.assign(value)
    return weights


def cut_box(image, box):
    """face-api's `extractFaceTensors` of one box (x, y, width, height in pixels): clipped at the
    image's borders, each value floored, then sliced. `image` [h, w, c], a tensor."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    x, y, w, h = (tf.cast(v, tf.float32) for v in box)
    x0, y0 = tf.maximum(x, 0.0), tf.maximum(y, 0.0)
    w = tf.minimum(x + w - x0, tf.cast(width, tf.float32) - x0)
    h = tf.minimum(y + h - y0, tf.cast(height, tf.float32) - y0)
    x0, y0, w, h = (tf.cast(tf.floor(v), tf.int32) for v in (x0, y0, w, h))
    return image[y0 : y0 + tf.maximum(h, 1), x0 : x0 + tf.maximum(w, 1)]


def net_input(face, size: int = xception.INPUT_SIZE):
    """face-api's `toBatchTensor(size, centred)` on one face [h, w, 3] (0-255): padded with zeros
    to a square (the odd pixel after it, like `padToSquare`), resized bilinearly without
    half-pixel centres (TF.js `resizeBilinear(.., false, false)`), then ImageNet-normalised as
    every input of this project (the network's first layer takes face-api's own normalisation
    from there)."""
    face = tf.cast(face, tf.float32)
    height, width = tf.shape(face)[0], tf.shape(face)[1]
    difference = tf.abs(height - width)
    after = (difference + 1) // 2  # JavaScript's Math.round(d / 2) rounds halves up
    before = difference - after
    pad_rows = tf.where(height < width, tf.stack([before, after]), tf.zeros(2, tf.int32))
    pad_columns = tf.where(height > width, tf.stack([before, after]), tf.zeros(2, tf.int32))
    square = tf.pad(face, tf.stack([pad_rows, pad_columns, tf.zeros(2, tf.int32)]))
    resized = tf.raw_ops.ResizeBilinear(images=square[None], size=[size, size], align_corners=False,
                                        half_pixel_centers=False)[0]
    return (resized / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


@dataclasses.dataclass(frozen=True)
class FaceApiCut:
    """face-api's rectangle as fractions of a square face crop (x, y, width, height): where its own
    pipeline would cut the face inside the crop (measured by `studies.faceapi_cut`)."""

    x: float
    y: float
    width: float
    height: float

    def __post_init__(self):
        if not (0 < self.width <= 2 and 0 < self.height <= 2 and -1 < self.x < 1 and -1 < self.y < 1):
            raise ValueError(f"face-api's cut {self} is not a rectangle inside the face crop.")

    def pixels(self, side):
        return [self.x * side, self.y * side, self.width * side, self.height * side]

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def cut_face(crop, cut: FaceApiCut):
    """The network's input for one square face crop [s, s, 3] (0-255): the fixed rectangle cut
    as face-api cuts a box, padded and resized as it does."""
    side = tf.cast(tf.shape(crop)[0], tf.float32)
    return net_input(cut_box(crop, cut.pixels(side)))
