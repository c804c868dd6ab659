"""A two-network release: the mean of the AL model's and face-api's ages, face-api's own cut of
the crop, the interval columns, and the checks of its files."""

import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_alage.evaluation import intervals
from keras_alage.models import age_model, attention, faceapi_import, release, xception
from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.serving import ensemble, export, photos
from pipelines import augment, faces

TINY = ModelConfig(depth=18, input_size=32, age_classes="utkface")
CUT = faceapi_import.FaceApiCut(0.05, 0.1, 0.9, 0.8)


def tiny_al_model():
    model = build_age_model(TINY)
    age_model.set_trained_heads(model, ("global", "local"))
    attention.freeze_attention_state(model)
    return model


def random_faceapi_net(seed=0):
    """face-api's layout with Keras' random initial weights and an age bias of 30 years (its
    weights need npm); its age head is scaled so different inputs get ages years apart."""
    keras.utils.set_random_seed(seed)
    net = xception.build_faceapi_age_net()
    head = net.get_layer("fc_age")
    head.kernel.assign(head.kernel.numpy() * 1e4 / max(float(np.abs(head.kernel.numpy()).sum()), 1e-12))
    head.bias.assign([30.0])
    return net


def crops(n=3, side=96):
    rng = np.random.default_rng(1)
    rows = np.linspace(0, 1, side)[:, None, None]  # dark top, bright bottom: a face-like up and down
    images = [np.clip(40 + 60 * i + 120 * rows + rng.normal(0, 30, (side, side, 3)), 0, 255).astype(np.uint8)
              for i in range(n)]
    return images, [faces.encode_jpeg(image) for image in images]


def table():
    return intervals.IntervalTable((20.0,), (-4.0, -9.0), (3.0, 12.0), 0.9, (100, 100), "test")


def test_the_answer_is_the_mean_of_both_networks_own_answers():
    model, net = tiny_al_model(), random_faceapi_net()
    server = ensemble.EnsembleServer(model, "center", net, CUT, table=table())
    _, encoded = crops()
    out = {k: v.numpy() for k, v in server.serve_encoded(tf.constant(encoded)).items()}
    alone = export.AgeServer(model, "center").serve_encoded(tf.constant(encoded))
    np.testing.assert_allclose(out["al_age"], alone["age"].numpy(), atol=1e-4)
    decoded = [augment.decode(e) for e in encoded]
    own = net(np.stack([faceapi_import.cut_face(d, CUT).numpy() for d in decoded]))["age"].numpy().reshape(-1)
    np.testing.assert_allclose(out["faceapi_age"], own, atol=1e-4)
    assert np.ptp(own) > 0.5  # the answer depends on the face, so a wrong cut cannot pass
    np.testing.assert_allclose(out["age"], 0.5 * out["al_age"] + 0.5 * out["faceapi_age"], atol=1e-4)
    low, high = intervals.apply(table(), out["age"])
    np.testing.assert_allclose(out["age_low"], low, atol=1e-4)
    np.testing.assert_allclose(out["age_high"], high, atol=1e-4)
    assert "age_std" not in out  # the AL distribution's spread is not the combined answer's
    # Decoded crops give what their encodings give.
    by_crops = server.serve_crops(tf.constant(np.stack([d.numpy() for d in decoded])))
    np.testing.assert_allclose(by_crops["age"].numpy(), out["age"], atol=1e-4)


def test_face_apis_cut_is_its_rectangle_of_the_crop_padded_and_resized():
    crop = np.zeros((100, 100, 3), np.uint8)
    crop[10:90, 5:95] = 200  # the rectangle CUT selects: x 5-95, y 10-90
    net_input = faceapi_import.cut_face(tf.constant(crop), CUT).numpy()
    pixels = (net_input * np.array([0.229, 0.224, 0.225]) + np.array([0.485, 0.456, 0.406])) * 255
    # 90 wide, 80 high: padded by 5 rows above and below, so the middle is the bright face
    assert np.allclose(pixels[20:90], 200, atol=1.0)
    assert np.allclose(pixels[:5], 0, atol=1.0) and np.allclose(pixels[-5:], 0, atol=1.0)


def test_the_combination_rule_is_checked():
    assert ensemble.combine(20.0, 40.0) == 30.0
    with pytest.raises(ValueError, match="rule"):
        ensemble.Combination("median", 0.5)
    with pytest.raises(ValueError, match="weight"):
        ensemble.Combination("mean", 1.5)


def two_network_release(tmp_path):
    folder = str(tmp_path / "v4")
    release.save(tiny_al_model(), folder, TINY, faces.CropSpec(96, 0.6, detector="dlib"), {}, crops="center")
    release.save_faceapi(folder, random_faceapi_net(), CUT.to_json(), ensemble.Combination().to_json(), "test")
    release.record_intervals(folder, table().to_json())
    return folder


def test_a_two_network_release_answers_with_intervals_in_the_csv(tmp_path):
    folder = two_network_release(tmp_path)
    predict = photos.load_predictor(folder)
    images, encoded = crops(2)
    out = predict(encoded)
    assert {"age_low", "age_high", "faceapi_age", "al_age"} <= set(out)
    found = [faces.center_face(image.shape, predict.face_crop) for image in images]
    located = photos.PhotoFaces("a.jpg", found[:1], encoded[:1])
    result = photos.answer_faces(located, {k: np.asarray(v)[:1] for k, v in out.items()}, predict.face_crop,
                                 predict.input_size)
    path = tmp_path / "ages.csv"
    photos.write_results([result], str(path))
    row = next(csv.DictReader(path.open()))
    assert float(row["age_low"]) <= float(row["age"]) <= float(row["age_high"])
    assert row["age_std"] == "" and float(row["faceapi_age"]) == pytest.approx(float(out["faceapi_age"][0]), abs=0.01)


def test_the_export_of_a_two_network_release_answers_alike(tmp_path):
    folder = two_network_release(tmp_path)
    server = photos.serving_module(release.open_model_path(folder))
    target = export.export_server(server, str(tmp_path / "serving"), "age", 1)
    _, encoded = crops(2)
    exported = photos.load_predictor(target)
    assert exported.input_size == TINY.input_size
    np.testing.assert_allclose(exported(encoded)["age"].numpy(), server.serve_encoded(tf.constant(encoded))["age"],
                               atol=1e-4)


def test_a_damaged_faceapi_file_is_refused(tmp_path):
    folder = two_network_release(tmp_path)
    with open(f"{folder}/{release.FACEAPI_FILE}", "r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    with pytest.raises(ValueError, match="SHA-256"):
        photos.load_predictor(folder)
