"""face-api's age network (npm, MIT) into `xception`'s layout: parity with the package's own TF.js
forward pass on real faces, and the reading of its quantised weights."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_alage.models import faceapi_import, faceapi_runtime, xception
from keras_alage.models.age_model import ModelConfig, build_age_model
from alage_pipelines import images as image_io


@pytest.fixture(scope="module")
def weights():
    try:
        return faceapi_import.read_faceapi_age_net()
    except FileNotFoundError as error:
        pytest.skip(f"{error} (`make install` runs it where npm exists)")


@pytest.fixture(scope="module")
def net(weights):
    model = xception.build_faceapi_age_net()
    faceapi_import.import_faceapi_age(model, weights)
    return model


def utk_faces(shared_data, count):
    """Real UTKFace crops, every other one cut to a non-square window (the padding's two sides)."""
    paths = sorted((shared_data / "utkface" / "crop_part1").glob("*.jpg"))[::700][:count]
    faces = []
    for i, path in enumerate(paths):
        face = image_io.read_image(str(path))
        faces.append(face[7 + i : 190, 20 : 171 + 2 * i] if i % 2 else face[30 : 170 + i, 11:200])
    return faces


def test_layout_is_face_apis():
    model = xception.build_tiny_xception()
    assert model.output_shape == (None, xception.MAP_SIZE, xception.MAP_SIZE, xception.MAP_CHANNELS)
    # TinyXception(2) with its two heads holds the manifest's 421,731 values, plus our 6-value input affine.
    assert xception.build_faceapi_age_net().count_params() == 421_731 + 6


def test_every_manifest_tensor_fills_one_weight(weights, net):
    assert len(weights.tensors) == 51  # the manifest lists 51 tensors
    for name, value in weights.tensors.items():
        layer, attribute = faceapi_import.keras_target(name)
        assert np.array_equal(getattr(net.get_layer("backbone").get_layer(layer) if not layer.startswith("fc_")
                                      else net.get_layer(layer), attribute).numpy(), value), name


@pytest.mark.slow
def test_parity_with_face_apis_own_runtime(shared_data, net):
    reason = faceapi_runtime.unavailable()
    if reason:
        pytest.skip(f"face-api's runtime: {reason}")
    faces = utk_faces(shared_data, 6)
    reference = faceapi_runtime.run("net", faces, with_map=True)
    inputs = np.stack([faceapi_import.net_input(tf.constant(face)).numpy() for face in faces])
    ours = net(inputs)
    for i, ref in enumerate(reference):
        their_map = np.array(ref["map"], np.float32).reshape(ref["map_shape"])[0]
        assert np.abs(ours["map"][i].numpy() - their_map).max() <= max(1e-4 * np.abs(their_map).max(), 1e-5)
        assert abs(float(ours["age"][i]) - ref["age"]) <= 0.01
        np.testing.assert_allclose(ours["gender"][i].numpy(), ref["gender"], atol=1e-4)
    # Real faces, real answers: not a network that says one age for all.
    assert np.ptp([r["age"] for r in reference]) > 10


def test_padding_to_a_square_is_face_apis():
    face = np.arange(3 * 5 * 3, dtype=np.float32).reshape(3, 5, 3) + 1
    net_input = faceapi_import.net_input(tf.constant(face), size=5).numpy()
    pixels = (net_input * image_io.IMAGENET_STD + image_io.IMAGENET_MEAN) * 255
    # Two rows missing: padToSquare appends round(2 / 2) = 1 after and 1 before; 5 -> 5 needs no resize.
    np.testing.assert_allclose(pixels[0], 0, atol=1e-3)
    np.testing.assert_allclose(pixels[1:4], face, atol=1e-3)
    np.testing.assert_allclose(pixels[4], 0, atol=1e-3)
    odd = faceapi_import.net_input(tf.constant(face[:2]), size=5).numpy()  # 3 rows missing: 2 after, 1 before
    odd = (odd * image_io.IMAGENET_STD + image_io.IMAGENET_MEAN) * 255
    np.testing.assert_allclose(odd[[0, 3, 4]], 0, atol=1e-3)
    np.testing.assert_allclose(odd[1:3], face[:2], atol=1e-3)


def test_cut_box_clips_and_floors_like_face_api():
    image = tf.reshape(tf.range(10 * 12, dtype=tf.float32), (10, 12, 1))
    cut = faceapi_import.cut_box(image, [-2.5, 1.7, 8.9, 20.0]).numpy()
    # x clipped to 0, width 6.4 -> 6; y 1.7 -> 1, height clipped to 8.3 -> 8.
    np.testing.assert_array_equal(cut[..., 0], image.numpy()[1:9, 0:6, 0])


def manifest_folder(tmp_path, values, quantised=True, extra=b""):
    scale, low = 0.5, -1.0
    q = np.round((np.asarray(values, np.float32) - low) / scale).astype(np.uint8)
    spec = {"name": "fc/age/weights", "shape": [len(values), 1], "dtype": "float32"}
    if quantised:
        spec["quantization"] = {"dtype": "uint8", "scale": scale, "min": low}
        payload = q.tobytes()
    else:
        payload = np.asarray(values, "<f4").tobytes()
    (tmp_path / faceapi_import.MANIFEST).write_text(json.dumps([{"paths": ["w.bin"], "weights": [spec]}]))
    (tmp_path / "w.bin").write_bytes(payload + extra)
    return tmp_path


def test_dequantisation_is_q_times_scale_plus_min(tmp_path):
    read = faceapi_import.read_faceapi_age_net(str(manifest_folder(tmp_path, [-1.0, 0.0, 1.5])))
    np.testing.assert_array_equal(read.tensors["fc/age/weights"][:, 0], [-1.0, 0.0, 1.5])


def test_float_tensors_are_read_as_stored(tmp_path):
    read = faceapi_import.read_faceapi_age_net(str(manifest_folder(tmp_path, [0.1, -2.25], quantised=False)))
    np.testing.assert_array_equal(read.tensors["fc/age/weights"][:, 0], np.float32([0.1, -2.25]))


def test_a_weights_file_of_the_wrong_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="bytes left"):
        faceapi_import.read_faceapi_age_net(str(manifest_folder(tmp_path, [0.0, 1.0], extra=b"\0")))
    short = manifest_folder(tmp_path, [0.0, 1.0])
    (short / "w.bin").write_bytes(b"\1")
    with pytest.raises(ValueError, match="truncated"):
        faceapi_import.read_faceapi_age_net(str(short))


def test_a_missing_package_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="npm ci --prefix tools/face-api"):
        faceapi_import.find_model(str(tmp_path))


def test_the_npm_archive_is_read_like_the_folder(weights, tmp_path):
    import tarfile

    folder = faceapi_import.find_model()
    archive = tmp_path / "face-api.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in (faceapi_import.MANIFEST, "age_gender_model.bin"):
            tar.add(f"{folder}/{name}", arcname=f"package/model/{name}")
    packed = faceapi_import.read_faceapi_age_net(str(archive))
    assert packed.tensors.keys() == weights.tensors.keys()
    assert all(np.array_equal(packed.tensors[k], weights.tensors[k]) for k in weights.tensors)


def test_import_refuses_a_layout_of_another_shape(weights):
    small = keras.Model.from_config(xception.build_faceapi_age_net().get_config())
    wrong = dict(weights.tensors)
    wrong["fc/age/weights"] = np.zeros((256, 1), np.float32)
    with pytest.raises(ValueError, match="fc_age.kernel: shape"):
        faceapi_import.import_faceapi_age(small, faceapi_import.FaceApiWeights(wrong, "test"))


def test_the_age_model_on_face_apis_layout_reads_its_7x7_map(net, weights):
    model = build_age_model(ModelConfig(layout="faceapi", input_size=112, age_classes="utkface"))
    faceapi_import.import_faceapi_age(model.get_layer("backbone"), weights)
    images = np.random.default_rng(0).normal(0, 1, (2, 112, 112, 3)).astype(np.float32)
    np.testing.assert_allclose(model.get_layer("backbone")(images).numpy(), net(images)["map"].numpy(), atol=1e-5)
    assert model.get_layer("backbone").output_shape == (None, 7, 7, 512) and model.name == "al_faceapi_xception"
