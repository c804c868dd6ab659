import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_alage.models import attention
from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.training import stages

SMALL = ModelConfig(depth=18, input_size=64, age_classes="fgnet")


@pytest.fixture(scope="module")
def small_model():
    return build_age_model(SMALL)


def images(n, seed=0, size=64):
    return np.random.default_rng(seed).uniform(-2, 2, (n, size, size, 3)).astype("float32")


def lstm_model(units=8, features=16):
    inputs = keras.Input((features,))
    layer = attention.CarriedStateLSTM(units, name="attention_lstm")
    return keras.Model(inputs, layer(inputs)), layer


# --- the box ------------------------------------------------------------------------


def test_box_stays_inside_the_map_for_any_logits():
    unit = np.concatenate(
        [np.random.default_rng(0).uniform(0, 1, (500, 4)), np.eye(4), 1 - np.eye(4), np.zeros((1, 4)), np.ones((1, 4))]
    ).astype("float32")
    box = attention.AttentionBox(min_size=0.2)(unit).numpy()
    x, y, w, h = box.T
    assert (x >= 0).all() and (y >= 0).all()
    assert (x + w <= 1 + 1e-6).all() and (y + h <= 1 + 1e-6).all()
    assert (w >= 0.2 - 1e-6).all() and (h >= 0.2 - 1e-6).all()


def test_max_box_size_bounds_the_box_and_survives_saving(tmp_path):
    unit = np.concatenate([np.ones((1, 4)), np.random.default_rng(1).uniform(0, 1, (50, 4))]).astype("float32")
    box = attention.AttentionBox(min_size=0.2, max_size=0.5)(unit).numpy()
    assert box[0, 2] == pytest.approx(0.5) and (box[:, 2:] <= 0.5 + 1e-6).all() and (box[:, 2:] >= 0.2 - 1e-6).all()
    assert (box[:, 0] + box[:, 2] <= 1 + 1e-6).all()
    with pytest.raises(ValueError, match="min_size < max_size"):
        attention.AttentionBox(min_size=0.5, max_size=0.4)
    model = build_age_model(ModelConfig(depth=18, input_size=64, max_box_size=0.5))
    model.save(tmp_path / "m.keras")
    assert keras.models.load_model(tmp_path / "m.keras").get_layer("attention_box").max_size == 0.5


def test_box_of_zero_logits_is_centred():
    x, y, w, h = attention.AttentionBox(min_size=0.2)(np.full((1, 4), 0.5, "float32")).numpy()[0]
    assert x + w / 2 == pytest.approx(0.5) and y + h / 2 == pytest.approx(0.5)


def test_model_boxes_lie_inside_the_image(small_model):
    box = small_model(images(6))["box"].numpy()
    assert (box[:, :2] >= 0).all() and (box[:, 0] + box[:, 2] <= 1 + 1e-6).all()
    assert (box[:, 1] + box[:, 3] <= 1 + 1e-6).all()


def test_crop_and_pool_averages_the_cells_inside_the_box():
    features = np.random.default_rng(1).normal(size=(2, 7, 7, 5)).astype("float32")
    # crop_and_resize maps 0..1 onto cell centres 0..6: this box spans cells 1-3 x 2-4.
    box = np.array([[2 / 6, 1 / 6, 2 / 6, 2 / 6], [0, 0, 1, 1]], "float32")
    pooled = attention.CropAndPool(crop_size=(3, 3))([features, box]).numpy()
    np.testing.assert_allclose(pooled[0], features[0, 1:4, 2:5].mean(axis=(0, 1)), atol=1e-5)
    full = attention.CropAndPool(crop_size=(7, 7))([features, box]).numpy()
    np.testing.assert_allclose(full[1], features[1].mean(axis=(0, 1)), atol=1e-5)


def test_local_loss_gradients_reach_the_box_predictor(small_model):
    labels = np.array([3, 40, 12])
    location = small_model.get_layer("attention_location")
    lstm = small_model.get_layer("attention_lstm")
    with tf.GradientTape() as tape:
        outputs = small_model(images(3), training=False)
        loss = stages.stage_loss(outputs, labels, "attention")
    grads = tape.gradient(loss, [location.kernel, location.bias, lstm.cell.kernel])
    for g in grads:
        assert g is not None and float(tf.reduce_max(tf.abs(g))) > 0


# --- the carried state --------------------------------------------------------------


def test_state_carries_across_calls_and_resets():
    model, layer = lstm_model()
    x = np.random.default_rng(2).normal(size=(4, 16)).astype("float32")
    first = model(x, training=True).numpy()
    hidden, cell = attention.attention_state(model)
    # The carried memory is the batch mean of the new (hidden, cell) states.
    np.testing.assert_allclose(cell[0], first[:, :8].mean(0), atol=1e-6)
    np.testing.assert_allclose(hidden[0], first[:, 8:].mean(0), atol=1e-6)
    second = model(x, training=True).numpy()
    assert np.abs(second - first).max() > 1e-4, "the memory must change what the LSTM outputs"
    layer.reset_state()
    assert not np.any(attention.attention_state(model)[0])
    np.testing.assert_allclose(model(x, training=True).numpy(), first, atol=1e-6)


def test_inference_never_writes_the_state():
    model, _ = lstm_model()
    x = np.random.default_rng(3).normal(size=(4, 16)).astype("float32")
    model(x, training=True)
    before = attention.attention_state(model)
    model(x, training=False)
    np.testing.assert_array_equal(attention.attention_state(model)[0], before[0])


def test_frozen_state_is_not_written_even_in_training_functions():
    model, layer = lstm_model()
    x = np.random.default_rng(4).normal(size=(4, 16)).astype("float32")
    step = tf.function(lambda v: model(v, training=True))
    step(x)  # traced while carrying
    attention.freeze_attention_state(model)
    assert layer.state_frozen
    before = attention.attention_state(model)[1]
    step(x * 3)
    np.testing.assert_array_equal(attention.attention_state(model)[1], before)
    attention.freeze_attention_state(model, frozen=False)
    step(x * 3)
    assert np.abs(attention.attention_state(model)[1] - before).max() > 1e-5


def test_frozen_inference_is_independent_of_order_and_batch(small_model):
    x = images(5, seed=5)
    small_model(images(5, seed=6), training=True)  # give the memory some content
    attention.freeze_attention_state(small_model)
    try:
        ages = small_model(x)["age"].numpy()
        permutation = np.array([3, 0, 4, 1, 2])
        np.testing.assert_allclose(small_model(x[permutation])["age"].numpy(), ages[permutation], rtol=1e-4, atol=1e-3)
        alone = small_model(x[2:3])["age"].numpy()
        np.testing.assert_allclose(alone, ages[2:3], rtol=1e-4, atol=1e-3)  # batch shapes round differently
        memory = attention.attention_state(small_model)
        small_model(images(5, seed=7), training=True)  # frozen: training calls leave it too
        for before, after in zip(memory, attention.attention_state(small_model)):
            np.testing.assert_array_equal(after, before)
    finally:
        attention.freeze_attention_state(small_model, frozen=False)


def test_partial_batches_are_accepted():
    model, _ = lstm_model()
    rng = np.random.default_rng(8)
    for n in (4, 3, 1):
        assert model(rng.normal(size=(n, 16)).astype("float32"), training=True).shape == (n, 16)


# --- replicas -----------------------------------------------------------------------


def test_state_under_mirrored_strategy_matches_one_device_with_unequal_replica_batches(two_cpu_strategy):
    strategy = two_cpu_strategy
    single, _ = lstm_model()
    with strategy.scope():
        mirrored, _ = lstm_model()
    mirrored.set_weights(single.get_weights())
    x = np.random.default_rng(9).normal(size=(7, 16)).astype("float32")  # splits 4 + 3
    single(x, training=True)
    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(x).batch(7))

    @tf.function
    def step(batch):
        return strategy.run(lambda b: mirrored(b, training=True), args=(batch,))

    for batch in dataset:
        step(batch)
    for expected, got in zip(attention.attention_state(single), attention.attention_state(mirrored)):
        np.testing.assert_allclose(got, expected, atol=1e-6)
    layer = mirrored.get_layer("attention_lstm")
    replica_values = [v.numpy() for v in layer.hidden_state.value.values]
    np.testing.assert_array_equal(replica_values[0], replica_values[1])


@pytest.mark.slow
def test_full_model_attention_stage_under_mirrored_strategy_matches_one_device(two_cpu_strategy):
    strategy = two_cpu_strategy
    single = build_age_model(SMALL)
    with strategy.scope():
        mirrored = build_age_model(SMALL)
    mirrored.set_weights(single.get_weights())
    for model in (single, mirrored):
        stages.set_training_stage(model, "attention")
    x = images(6, seed=10)
    expected = single(x, training=True)["local_probs"].numpy()
    dataset = strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensor_slices(x).batch(6))

    @tf.function
    def step(batch):
        return strategy.run(lambda b: mirrored(b, training=True)["local_probs"], args=(batch,))

    for batch in dataset:
        got = np.concatenate([t.numpy() for t in step(batch).values])
    # Replicas see batches of 3, not 6, so other kernels run: up to 1.2e-5 apart on saturated
    # probabilities (seen once in a full run); the test guards the function, not the last digits.
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(attention.attention_state(mirrored)[1], attention.attention_state(single)[1], atol=1e-4)


@pytest.mark.parametrize("crop_size", [(7, 7), (3, 5), (1, 1)])
def test_gather_crop_equals_crop_and_resize(crop_size):
    rng = np.random.default_rng(4)
    features = tf.constant(rng.normal(size=(5, 7, 6, 3)).astype("float32"))
    box = attention.AttentionBox(1.0 / 7.0)(tf.constant(rng.uniform(size=(5, 4)).astype("float32")))
    corners = attention.box_to_corners(box)
    expected = tf.image.crop_and_resize(features, corners, tf.range(5), crop_size)
    np.testing.assert_allclose(attention.gather_crop(features, corners, crop_size), expected, atol=1e-5)
    compiled = tf.function(lambda f, c: attention.gather_crop(f, c, crop_size), jit_compile=True)
    np.testing.assert_allclose(compiled(features, corners), expected, atol=1e-5)


@pytest.mark.parametrize("size", [(4, 4), (2, 7), (7, 7)])
def test_the_reported_box_covers_exactly_what_the_crop_samples(size):
    """A feature map whose two channels hold each cell centre's position on the input (as
    fractions): bilinear sampling of it is exact, so the crop's first and last samples say
    where on the input it sampled; the input-frame box must span exactly those points."""
    height, width = size
    rows = (np.arange(height) + 0.5) / height
    cols = (np.arange(width) + 0.5) / width
    positions = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1)[None].astype(np.float32)  # (y, x)
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.010, 0.407, 0.474, 0.487], [0.3, 0.1, 1 / 7, 0.5]], np.float32)
    features = np.repeat(positions, len(boxes), axis=0)
    crops = tf.image.crop_and_resize(features, attention.box_to_corners(boxes), tf.range(len(boxes)), (5, 5)).numpy()
    first, last = crops[:, 0, 0], crops[:, -1, -1]  # (y, x) on the input of the first and last samples
    drawn = attention.InputFrameBox()([tf.constant(features), tf.constant(boxes)]).numpy()
    np.testing.assert_allclose(drawn[:, 1], first[:, 0], atol=1e-6)
    np.testing.assert_allclose(drawn[:, 0], first[:, 1], atol=1e-6)
    np.testing.assert_allclose(drawn[:, 1] + drawn[:, 3], last[:, 0], atol=1e-6)
    np.testing.assert_allclose(drawn[:, 0] + drawn[:, 2], last[:, 1], atol=1e-6)
    np.testing.assert_allclose(attention.sampling_box(drawn, height, width), boxes, atol=1e-6)
    if size == (4, 4):  # the worked example: the fold0 box samples x in [0.13, 0.49], y in [0.43, 0.80]
        np.testing.assert_allclose(drawn[1, [0, 1]], [0.1325, 0.43025], atol=1e-4)
        np.testing.assert_allclose(drawn[1, [0, 1]] + drawn[1, [2, 3]], [0.488, 0.7955], atol=1e-4)


def test_the_model_reports_the_input_frame_box():
    model = build_age_model(ModelConfig(depth=18, input_size=64, age_classes="adience"))
    outputs = model(np.zeros((2, 64, 64, 3), np.float32), training=False)
    features, inner = model.get_layer("attention_crop").input
    probe = keras.Model(model.inputs, [inner, features])
    box, features = probe(np.zeros((2, 64, 64, 3), np.float32))
    height, width = features.shape[1:3]
    np.testing.assert_allclose(outputs["box"], attention.input_frame_box(box, height, width), atol=1e-6)


@pytest.mark.parametrize("box", [(0.5, 0.2, 0.25, 0.2), (0.3, 0.35, 0.12, 0.3), "whole"])
def test_a_fixed_box_is_answered_for_every_face(box):
    model = build_age_model(ModelConfig(depth=18, input_size=128, age_classes="adience", max_box_size=1.0))
    answered = attention.fix_box(model, box)
    images = np.random.default_rng(0).uniform(-2, 2, (3, 128, 128, 3)).astype(np.float32)
    boxes = model(images, training=False)["box"].numpy()
    features, _ = model.get_layer("attention_crop").input
    height = features.shape[1]
    expected = ((0.5 / height, 0.5 / height, (height - 1) / height, (height - 1) / height)
                if box == "whole" else box)
    np.testing.assert_allclose(boxes, np.tile(expected, (3, 1)), atol=1e-5)
    np.testing.assert_allclose(answered, expected, atol=1e-5)


def test_a_fixed_box_outside_the_bounds_is_refused():
    model = build_age_model(ModelConfig(depth=18, input_size=128, age_classes="adience", max_box_size=0.5))
    with pytest.raises(ValueError, match="boxes are 0.143 to 0.500"):
        attention.fix_box(model, "whole")
    with pytest.raises(ValueError, match="outside the feature map: on a 4x4 map"):
        attention.fix_box(model, (0.8, 0.1, 0.2, 0.2))


# --- the movable box (issue 35): its gradient never dies, it can shrink and move --------------


def _box_gradients(layer, raw):
    """d(sum of the box's x, y, w, h, each weighted differently)/d(raw outputs)."""
    raw = tf.Variable(np.asarray(raw, np.float32)[None])
    with tf.GradientTape() as tape:
        box = layer(raw)
        objective = tf.reduce_sum(box * tf.constant([[1.0, 2.0, 3.0, 5.0]]))
    return tape.gradient(objective, raw).numpy()[0], box.numpy()[0]


@pytest.mark.parametrize("size_logit", [0.0, 0.05, 3.0, 20.0])
def test_movable_box_gradients_reach_centre_and_size_at_and_beyond_the_whole_map(size_logit):
    """At the whole-map box (size logit 0 with initial size 1), near it, and far past it, the
    centre and size outputs still get a gradient: the old box's x = s_x (1 - w) and saturated
    sigmoid gave none."""
    layer = attention.MovableBox(min_size=1 / 7, max_size=1.0, initial_size=1.0)
    for centre in (0.0, 0.02, -0.03):
        gradients, box = _box_gradients(layer, [centre, centre, size_logit, size_logit])
        if size_logit >= 0 and centre == 0.0:
            np.testing.assert_allclose(box, [0, 0, 1, 1], atol=1e-6)
        assert (np.abs(gradients) > 1e-3).all(), (centre, size_logit, gradients)


def test_the_bounded_box_loses_its_gradient_at_the_whole_map():
    """Why `MovableBox` exists: the paper's box at the whole map (the 7x7 test's w = 0.857 of the
    input, sigmoid 1 - 1e-6) passes no gradient to its centre or size."""
    logits = tf.Variable(np.full((1, 4), 14.0, np.float32))
    location = keras.layers.Activation("sigmoid")
    with tf.GradientTape() as tape:
        box = attention.AttentionBox(min_size=1 / 7)(location(logits))
        objective = tf.reduce_sum(box * tf.constant([[1.0, 2.0, 3.0, 5.0]]))
    assert np.abs(tape.gradient(objective, logits).numpy()).max() < 1e-5


def test_movable_box_stays_inside_the_map_and_its_bounds():
    raw = np.random.default_rng(0).normal(0, 3, (2000, 4)).astype("float32")
    raw[:4] = [[1e30, -1e30, 1e4, -1e4], [np.nan, 0, np.inf, 0], [0, np.inf, -np.inf, np.nan], [90, 90, 90, 90]]
    x, y, w, h = attention.MovableBox(min_size=0.2, max_size=0.9)(raw).numpy().T
    assert np.isfinite([x, y, w, h]).all()  # overflowing or non-finite outputs never reach the gather
    assert (x >= 0).all() and (y >= 0).all() and (x + w <= 1 + 1e-6).all() and (y + h <= 1 + 1e-6).all()
    assert (w >= 0.2 - 1e-6).all() and (h >= 0.2 - 1e-6).all() and (w <= 0.9 + 1e-6).all()
    x, y, w, h = attention.MovableBox(min_size=0.2, max_size=0.9, initial_size=0.5)(np.zeros((1, 4), "float32"))[0]
    assert float(w) == pytest.approx(0.5) and float(x + w / 2) == pytest.approx(0.5)


def _toy_location_problem(box_layer, start_raw, steps=10, learning_rate=0.5, sampling="gather"):
    """Features hold the target only in the map's top-left 2x2 cells (zero elsewhere): the loss,
    (crop mean - 1)^2, falls only if the box leaves the whole map toward that corner. Trains the
    location network's bias (the box outputs) alone; returns the final box."""
    features = np.zeros((1, 7, 7, 1), np.float32)
    features[0, :2, :2] = 1.0
    raw = tf.Variable(np.asarray(start_raw, np.float32)[None])
    crop = attention.CropAndPool((7, 7), sampling)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean((crop([features, box_layer(raw)]) - 1.0) ** 2)
        raw.assign_sub(learning_rate * tape.gradient(loss, raw))
    return box_layer(raw).numpy()[0]


def test_the_movable_box_leaves_the_whole_map_when_location_matters():
    movable = attention.MovableBox(min_size=1 / 7, max_size=1.0, initial_size=1.0, raw_scale=1.0)
    start = [0.0, 0.0, 0.0, 0.0]  # the whole map
    np.testing.assert_allclose(movable(np.zeros((1, 4), "float32")).numpy()[0], [0, 0, 1, 1], atol=1e-6)
    x, y, w, h = _toy_location_problem(movable, start)
    assert w < 0.6 and h < 0.6 and x + w / 2 < 0.35 and y + h / 2 < 0.35  # shrank toward the top-left
    # the paper's box started at the whole map (saturated sigmoids) stays there
    bounded = keras.Sequential([keras.layers.Activation("sigmoid"), attention.AttentionBox(min_size=1 / 7)])
    x, y, w, h = _toy_location_problem(bounded, [0.0, 0.0, 14.0, 14.0], sampling="crop_and_resize")
    assert w > 0.99 and h > 0.99
    # and crop_and_resize passes no gradient to a whole-map box whose samples lie on cell centres
    x, y, w, h = _toy_location_problem(movable, start, sampling="crop_and_resize")
    assert w > 0.99 and h > 0.99


def test_the_raw_scale_slows_the_box_alike_forward_and_back():
    """raw_scale s: the box at raw u equals the box of scale 1 at s u, and its gradient is s times."""
    raw = np.array([0.3, -0.2, -0.4, 0.1], np.float32)
    slow, fast = attention.MovableBox(raw_scale=0.1), attention.MovableBox(raw_scale=1.0)
    slow_gradients, slow_box = _box_gradients(slow, raw)
    fast_gradients, fast_box = _box_gradients(fast, 0.1 * raw)
    np.testing.assert_allclose(slow_box, fast_box, atol=1e-6)
    np.testing.assert_allclose(slow_gradients, 0.1 * fast_gradients, rtol=1e-5)
    assert attention.MovableBox.from_config(slow.get_config()).raw_scale == 0.1


def test_a_movable_box_model_saves_loads_and_fixes_a_box(tmp_path):
    config = ModelConfig(depth=18, input_size=64, box="movable")
    model = build_age_model(config)
    assert isinstance(model.get_layer("attention_box"), attention.MovableBox)
    assert model.get_layer("attention_crop").sampling == "gather"
    assert build_age_model(SMALL).get_layer("attention_crop").sampling == "crop_and_resize"
    shown = attention.fix_box(model, (0.3, 0.35, 0.4, 0.3))
    boxes = model(images(3))["box"].numpy()
    np.testing.assert_allclose(boxes, np.tile(shown, (3, 1)), atol=1e-5)
    np.testing.assert_allclose(shown, [0.3, 0.35, 0.4, 0.3], atol=1e-5)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded(images(3))["box"].numpy(), boxes, atol=1e-6)
    attention.fix_box(model, attention.WHOLE_MAP)
    np.testing.assert_allclose(model.get_layer("attention_box")(model.get_layer("attention_location").bias[None]
                                                                 * 0 + model.get_layer("attention_location").bias[None]),
                               [[0, 0, 1, 1]], atol=1e-5)
    with pytest.raises(ValueError, match="box must be one of"):
        ModelConfig(box="free")
