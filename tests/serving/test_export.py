import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_alage.models import attention
from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.serving import export
from alage_pipelines import augment, faces, images

CONFIG = ModelConfig(depth=18, input_size=64, age_classes="fgnet")


@pytest.fixture(scope="module")
def face_crops(fgnet_images):
    """Four real FG-NET faces cut with the project's crop specification (centre fallback)."""
    spec = faces.CropSpec(size=96)
    crops = []
    for path in fgnet_images[:4]:
        photo = images.read_image(path)
        crops.append(faces.encode_jpeg(faces.crop_face(photo, faces.center_face(photo.shape, spec), spec)))
    return crops


@pytest.fixture(scope="module")
def exported(tmp_path_factory, face_crops):
    model = build_age_model(CONFIG)
    attention.reset_attention_state(model)
    # A memory that is not zero, to show it is frozen into the export.
    model(np.random.default_rng(0).normal(size=(4, 64, 64, 3)).astype("float32"), training=True)
    base = tmp_path_factory.mktemp("serving")
    path = export.export_saved_model(model, str(base), "age", 1, crops="ten", warmup_images=face_crops[:2])
    return model, path, base


def _keras_ten_crop_ages(model, encoded):
    batch = np.stack([augment.preprocess_for_eval(augment.decode(e), 64, "ten").numpy() for e in encoded])
    outputs = model(batch.reshape(-1, 64, 64, 3), training=False)
    probs = np.asarray(outputs["probs"]).reshape(len(encoded), 10, -1).mean(1)
    return probs @ np.asarray(model.get_layer("age").class_ages)


def test_layout_and_signatures_seen_by_saved_model_cli(exported):
    _, path, base = exported
    assert path == os.path.join(str(base), "age", "1")
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", path, "--all"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr[-2000:]
    text = shown.stdout
    default = text[text.index("signature_def['serving_default']"):]
    default = default[: default.index("Method name")]
    assert "dtype: DT_STRING" in default and "shape: (-1)" in default
    for name, shape in (("age", "(-1)"), ("age_std", "(-1)"), ("probs", "(-1, 70)"), ("box", "(-1, 4)"),
                        ("global_age", "(-1)")):
        block = default[default.index(f"outputs['{name}']"):]
        assert "dtype: DT_FLOAT" in block.split("name:")[0] and f"shape: {shape}" in block.split("name:")[0]
    assert "signature_def['predict_preprocessed']" in text and "shape: (-1, 64, 64, 3)" in text


def test_the_centre_and_mirror_server_averages_the_two_views_of_each_face(exported, face_crops):
    """crops="center_flip": each face's answer is the mean of the network's probabilities for its
    centre crop and that crop mirrored; the box is the unmirrored crop's."""
    model = exported[0]
    server = export.AgeServer(model, "center_flip")
    answered = {k: np.asarray(v) for k, v in server.serve_encoded(tf.constant(face_crops)).items()}
    centre = np.stack([augment.preprocess_for_eval(augment.decode(e), 64, "center").numpy() for e in face_crops])
    plain, mirrored = model(centre, training=False), model(centre[:, :, ::-1], training=False)
    probs = (np.asarray(plain["probs"]) + np.asarray(mirrored["probs"])) / 2
    np.testing.assert_allclose(answered["probs"], probs, atol=1e-5)
    np.testing.assert_allclose(answered["age"], probs @ np.asarray(model.get_layer("age").class_ages), atol=1e-3)
    np.testing.assert_allclose(answered["box"], np.asarray(plain["box"]), atol=1e-5)
    with pytest.raises(ValueError, match="crops must be one of"):
        export.AgeServer(model, "mirror")
    # shift_flip: the mean over its ten crops, the box the unmirrored centre's.
    shifted = {k: np.asarray(v) for k, v in export.AgeServer(model, "shift_flip").serve_encoded(
        tf.constant(face_crops)).items()}
    ten = np.stack([augment.preprocess_for_eval(augment.decode(e), 64, "shift_flip").numpy() for e in face_crops])
    outputs = model(ten.reshape(-1, 64, 64, 3), training=False)
    np.testing.assert_allclose(shifted["probs"], np.asarray(outputs["probs"]).reshape(len(face_crops), 10, -1).mean(1),
                               atol=1e-5)
    np.testing.assert_allclose(shifted["box"], np.asarray(plain["box"]), atol=1e-5)


def test_reloaded_savedmodel_answers_like_keras_on_real_faces(exported, face_crops):
    model, path, _ = exported
    serving = tf.saved_model.load(path).signatures["serving_default"]
    got = serving(images=tf.constant(face_crops))
    np.testing.assert_allclose(got["age"].numpy(), _keras_ten_crop_ages(model, face_crops), atol=1e-3)
    assert got["probs"].shape == (4, 70) and np.allclose(got["probs"].numpy().sum(-1), 1.0, atol=1e-5)
    ages = np.arange(70, dtype=np.float64)
    spread = np.sqrt((got["probs"].numpy() * (ages - got["age"].numpy()[:, None]) ** 2).sum(-1))
    np.testing.assert_allclose(got["age_std"].numpy(), spread, atol=1e-3)

    preprocessed = tf.saved_model.load(path).signatures["predict_preprocessed"]
    batch = np.stack([augment.preprocess_for_eval(augment.decode(e), 64, "center").numpy() for e in face_crops])
    np.testing.assert_allclose(preprocessed(images=tf.constant(batch))["age"].numpy(),
                               np.asarray(model(batch, training=False)["age"]), atol=1e-3)


def test_an_answer_does_not_depend_on_the_batch_or_its_order(exported, face_crops):
    _, path, _ = exported
    serving = tf.saved_model.load(path).signatures["serving_default"]
    together = serving(images=tf.constant(face_crops))["age"].numpy()
    alone = [serving(images=tf.constant([c]))["age"].numpy()[0] for c in face_crops]
    reversed_ages = serving(images=tf.constant(face_crops[::-1]))["age"].numpy()[::-1]
    np.testing.assert_allclose(alone, together, atol=1e-4)
    np.testing.assert_allclose(reversed_ages, together, atol=1e-4)


def test_warmup_requests_are_prediction_logs_for_serving_default(exported, face_crops):
    from tensorflow_serving.apis import prediction_log_pb2

    _, path, _ = exported
    records = list(tf.data.TFRecordDataset(os.path.join(path, "assets.extra", export.WARMUP_FILE)))
    assert len(records) == 3  # each image alone, then both as a batch
    log = prediction_log_pb2.PredictionLog.FromString(records[-1].numpy())
    request = log.predict_log.request
    assert request.model_spec.signature_name == "serving_default"
    assert tf.make_ndarray(request.inputs["images"]).tolist() == face_crops[:2]


def test_a_killed_exports_leftover_is_removed_by_the_next_export(exported, tmp_path):
    model, _, _ = exported
    leftover = tmp_path / "age" / ".1.exporting-killed"
    (leftover / "variables").mkdir(parents=True)  # what a SIGKILL mid-save leaves
    target = export.export_saved_model(model, str(tmp_path), "age", 1, crops="center")
    assert not leftover.exists() and sorted(os.listdir(tmp_path / "age")) == [".lock", "1"]
    assert os.path.exists(os.path.join(target, "saved_model.pb"))


def test_an_existing_version_is_kept_unless_overwrite(exported):
    model, _, base = exported
    with pytest.raises(FileExistsError, match="--overwrite"):
        export.export_saved_model(model, str(base), "age", 1, crops="center")
    with pytest.raises(ValueError, match="positive"):
        export.export_saved_model(model, str(base), "age", 0)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["tflite", "onnx"])
def test_tflite_and_onnx_exports_match_keras_on_real_faces(fmt, exported, face_crops, tmp_path):
    model, _, _ = exported
    probe = np.stack([augment.preprocess_for_eval(augment.decode(e), 64, "center").numpy() for e in face_crops])
    writer = export.export_tflite if fmt == "tflite" else export.export_onnx
    difference = writer(model, str(tmp_path / f"age.{fmt}"), probe)
    assert difference < 1e-3 and (tmp_path / f"age.{fmt}").stat().st_size > 1_000_000  # weights inside
    if fmt == "tflite":
        again = export.run_tflite((tmp_path / "age.tflite").read_bytes(), probe[:1])
        np.testing.assert_allclose(again["age"], np.asarray(model(probe[:1], training=False)["age"]), atol=1e-3)
    with pytest.raises(ValueError, match="differs from Keras"):
        writer(model, str(tmp_path / f"strict.{fmt}"), probe, tolerance=0.0)
    assert not (tmp_path / f"strict.{fmt}").exists()


def test_exported_folder_is_readable_by_other_users(exported):
    _, path, _ = exported
    assert os.stat(path).st_mode & 0o755 == 0o755


def test_a_version_folder_that_is_a_link_is_refused_before_anything_is_staged(exported, tmp_path):
    """`export --overwrite` onto a linked version folder staged the whole export, then rmtree refused the link."""
    model, _, _ = exported
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("a user's")
    (tmp_path / "age").mkdir()
    os.symlink(elsewhere, tmp_path / "age" / "1")
    with pytest.raises(FileExistsError, match="age/1 is a symbolic link; an export replaces only a version folder"):
        export.export_saved_model(model, str(tmp_path), "age", 1, crops="center", overwrite=True)
    assert sorted(os.listdir(tmp_path / "age")) == ["1"] and os.listdir(elsewhere) == ["keep.txt"]
    with pytest.raises(ValueError, match="up to 9223372036854775807"):  # TF Serving reads versions as int64
        export.export_saved_model(model, str(tmp_path), "age", 99999999999999999999999)


def test_an_interrupted_save_leaves_no_staging_and_ends_the_export(exported, tmp_path, monkeypatch):
    """Ctrl-C (KeyboardInterrupt) while TensorFlow saves: it propagates, and the staging folder goes."""
    model, _, _ = exported

    def interrupted(module, folder, signatures=None):
        os.makedirs(os.path.join(folder, "variables"))
        raise KeyboardInterrupt

    monkeypatch.setattr(tf.saved_model, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export.export_saved_model(model, str(tmp_path), "age", 1, crops="center")
    assert sorted(os.listdir(tmp_path / "age")) == [".lock"]


def test_an_export_failing_mid_swap_leaves_the_old_version_whole(exported, tmp_path, monkeypatch):
    """The export removed the old version before renaming the new one in: a failure (or a kill)
    between the two left no version at all. Now the old one is set aside, and put back."""
    model, _, _ = exported
    old = tmp_path / "age" / "1"
    (old / "variables").mkdir(parents=True)
    (old / "saved_model.pb").write_bytes(b"the old version")
    (old / "variables" / "variables.index").write_bytes(b"its weights")

    def save(module, folder, signatures=None):
        with open(os.path.join(folder, "saved_model.pb"), "wb") as handle:
            handle.write(b"a new version")

    rename = os.rename

    def fails_into_place(source, destination):
        if ".exporting-" in os.path.basename(source):  # the new version's rename into place
            raise OSError(5, "Input/output error")
        rename(source, destination)

    monkeypatch.setattr(tf.saved_model, "save", save)
    monkeypatch.setattr(os, "rename", fails_into_place)
    with pytest.raises(OSError, match="Input/output"):
        export.export_saved_model(model, str(tmp_path), "age", 1, crops="center", overwrite=True)
    assert sorted(os.listdir(tmp_path / "age")) == [".lock", "1"]  # no staging, nothing set aside left
    assert (old / "saved_model.pb").read_bytes() == b"the old version"
    assert (old / "variables" / "variables.index").read_bytes() == b"its weights"
    monkeypatch.setattr(os, "rename", rename)
    export.export_saved_model(model, str(tmp_path), "age", 1, crops="center", overwrite=True)
    assert os.listdir(old) == ["saved_model.pb"] and (old / "saved_model.pb").read_bytes() == b"a new version"


# --- the photo signature's pieces: the predict path's decode, chip and cut, in TensorFlow -------------


@pytest.mark.parametrize("face", [
    faces.Face((222.0, 124.0), (74.5, 74.5), 10.4),  # the sample's face, rolled
    faces.Face((30.0, 480.0), (120.0, 120.0), -35.0),  # past the photo's corner: borders replicated
    faces.Face((256.0, 256.0), (700.0, 700.0), 3.0),  # larger than the crop: warped at 4x, shrunk by area
    faces.Face((300.0, 200.0), (20.0, 26.0), 0.0),  # smaller than the crop, not square
])
def test_cut_faces_cuts_the_pixels_faces_crop_face_cuts(face):
    _, photo = images.read_photo(os.path.join(os.path.dirname(__file__), "..", "..", "samples",
                                              "astronaut_eileen_collins.jpg"))
    spec = faces.CropSpec(size=256, margin=0.6, detector="dlib")
    expected = faces.crop_face(photo, face, spec).astype(int)
    got = export.cut_faces(tf.constant(photo), tf.constant([face.center]), tf.constant([face.size]),
                           tf.constant([face.angle]), spec).numpy()[0].astype(int)
    difference = np.abs(got - expected)
    assert difference.max() <= 1 and difference.mean() < 0.01  # where the two bilinear warps round apart


def test_chip_geometry_is_the_predict_paths_chip_of_keypoints():
    rng = np.random.default_rng(3)
    template = np.asarray(faces.CHIP_KEYPOINTS["short"])
    points = rng.uniform(0, 500, size=(5, 6, 2))
    centres, sides, rolls = [t.numpy() for t in export.chip_geometry(tf.constant(points), template)]
    for i in range(5):
        (cx, cy), side, roll = faces.chip_of_keypoints(points[i, list(faces.KEYPOINTS_USED)], template)
        np.testing.assert_allclose(centres[i], (cx, cy), atol=1e-2)
        np.testing.assert_allclose([sides[i], rolls[i]], [side, roll], atol=1e-2)


def test_decode_photo_decodes_as_read_photo_and_refuses_what_is_not_a_bounded_photo(tmp_path):
    sample = os.path.join(os.path.dirname(__file__), "..", "..", "samples", "astronaut_eileen_collins.jpg")
    data, photo = images.read_photo(sample)
    np.testing.assert_array_equal(export.decode_photo(tf.constant(data)).numpy(), photo)  # libjpeg's accurate DCT
    png = tf.io.encode_png(tf.constant(photo)).numpy()
    np.testing.assert_array_equal(export.decode_photo(tf.constant(png)).numpy(), photo)
    with pytest.raises(tf.errors.InvalidArgumentError, match="a photo must be a JPEG or PNG image"):
        export.decode_photo(tf.constant(b"GIF89a" + bytes(40)))
    bomb = b"\x89PNG\r\n\x1a\n" + bytes(8) + (20000).to_bytes(4, "big") + (20000).to_bytes(4, "big") + bytes(16)
    with pytest.raises(tf.errors.InvalidArgumentError, match="announces more pixels than the limit"):
        export.decode_photo(tf.constant(bomb))


def test_a_photo_server_needs_the_models_face_crop_and_a_known_detector(exported):
    model = exported[0]
    with pytest.raises(ValueError, match="needs the model's face crop"):
        export.PhotoServer(export.AgeServer(model, "center"), None, None, faces.CHIP_KEYPOINTS["short"])
    with pytest.raises(ValueError, match="--photo_detector must be one of"):
        export.photo_server(export.AgeServer(model, "center"), faces.CropSpec(), "medium")


def test_a_face_not_found_again_keeps_its_first_fit_inside_the_graph():
    """The whole-photo path refits each face on the region around it; a region where BlazeFace finds
    nothing (or nothing near) keeps the first fit instead of failing the request, and otherwise the
    nearest refit within REFINE_NEAR chip sides is taken, as `faces.KeypointDetector._refined` does."""
    face = tf.constant([100.0, 80.0, 40.0, 5.0])
    pick = tf.function(lambda c, s, r: export.nearest_fit(c, s, r, face))
    empty = tf.zeros([0, 2]), tf.zeros([0]), tf.zeros([0])
    np.testing.assert_array_equal(pick(*empty).numpy(), face.numpy())
    near = (tf.constant([[130.0, 80.0], [104.0, 83.0], [101.0, 90.0]]), tf.constant([38.0, 41.0, 39.0]),
            tf.constant([0.0, 6.0, 7.0]))  # the first is 0.75 sides away, the second nearest
    np.testing.assert_allclose(pick(*near).numpy(), [104.0, 83.0, 41.0, 6.0])
    far = tf.constant([[100.0 + faces.REFINE_NEAR * 40.0 + 1.0, 80.0]]), tf.constant([50.0]), tf.constant([0.0])
    np.testing.assert_array_equal(pick(*far).numpy(), face.numpy())
