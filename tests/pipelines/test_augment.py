import numpy as np
import pytest
import tensorflow as tf

from alage_pipelines import augment, configs


def random_image(h=40, w=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_random_sized_crop_shape_range_and_variety():
    image = augment.to_float(random_image())
    crops = [augment.random_sized_crop(image, 16).numpy() for _ in range(6)]
    assert all(c.shape == (16, 16, 3) and 0 <= c.min() and c.max() <= 1 for c in crops)
    assert len({c.tobytes() for c in crops}) > 1, "crops must vary"


def test_full_area_crop_keeps_the_whole_image():
    image = augment.to_float(random_image(20, 20))
    crop = augment.random_sized_crop(image, 20, area_range=(1.0, 1.0), aspect_range=(1.0, 1.0))
    np.testing.assert_allclose(crop.numpy(), image.numpy(), atol=1e-5)


def test_flip_mirrors_or_keeps():
    image = augment.to_float(random_image())
    results = {augment.random_flip(image).numpy().tobytes() for _ in range(20)}
    assert results == {image.numpy().tobytes(), image.numpy()[:, ::-1].tobytes()}


def test_jitter_and_lighting_stay_in_range_and_change_the_image():
    image = augment.to_float(random_image())
    jittered = augment.lighting(augment.color_jitter(image), alpha_std=0.5)
    assert 0 <= float(tf.reduce_min(jittered)) and float(tf.reduce_max(jittered)) <= 1
    assert float(tf.reduce_max(tf.abs(jittered - image))) > 0
    np.testing.assert_array_equal(augment.lighting(image, alpha_std=0).numpy(), image.numpy())


def test_ten_crop_equals_hand_made_slices():
    image = augment.to_float(random_image(9, 8)).numpy()
    crops = augment.ten_crop(tf.constant(image), 5).numpy()
    expected = [image[:5, :5], image[:5, 3:], image[4:, :5], image[4:, 3:], image[2:7, 1:6]]
    expected += [e[:, ::-1] for e in expected]
    assert crops.shape == (10, 5, 5, 3)
    for got, want in zip(crops, expected):
        np.testing.assert_array_equal(got, want)


def test_eval_preprocessing_shapes_and_normalisation():
    image = random_image(300, 250)
    ten = augment.preprocess_for_eval(image, 224)
    assert ten.shape == (10, 224, 224, 3)
    centre = augment.preprocess_for_eval(image, 224, crops="center")
    assert centre.shape == (224, 224, 3)
    np.testing.assert_allclose(ten[4].numpy(), centre.numpy(), atol=1e-6)
    assert augment.eval_resize_size(224) == 256 and augment.eval_resize_size(112) == 128
    with pytest.raises(ValueError, match="received 'five'"):
        augment.preprocess_for_eval(image, 224, crops="five")
    pair = augment.preprocess_for_eval(image, 224, crops="center_flip").numpy()
    assert pair.shape == (2, 224, 224, 3) == tuple(augment.crop_shape("center_flip", 224))
    np.testing.assert_array_equal(pair[0], centre.numpy())
    np.testing.assert_array_equal(pair[1], centre.numpy()[:, ::-1])  # the mirror, not a shifted crop


def test_shift_flip_moves_the_centre_crop_a_few_pixels_four_ways_then_mirrors_all():
    image = augment.to_float(random_image(73, 73)).numpy()  # 64 px input: resized to 73, shift 2
    crops = augment.shift_flip(tf.constant(image), 64).numpy()
    assert augment.shift_pixels(64) == 2 and augment.shift_pixels(224) == 7 and augment.shift_pixels(16) == 1
    top = left = (73 - 64) // 2
    windows = [(top, left + 2), (top, left - 2), (top + 2, left), (top - 2, left), (top, left)]
    expected = [image[t : t + 64, l : l + 64] for t, l in windows]
    expected += [e[:, ::-1] for e in expected]
    assert crops.shape == (10, 64, 64, 3)
    for got, want in zip(crops, expected):
        np.testing.assert_array_equal(got, want)
    assert augment.centre_crop_index(10) == augment.CENTER_CROP  # the unmirrored centre, as in ten_crop
    np.testing.assert_array_equal(crops[augment.CENTER_CROP], image[top : top + 64, left : left + 64])
    evaluated = augment.preprocess_for_eval(random_image(90, 80), 64, crops="shift_flip")
    assert evaluated.shape == tuple(augment.crop_shape("shift_flip", 64)) == (10, 64, 64, 3)
    # Another distance, as benchmarks/shift_crops.py compares them: 3 px right is the first crop.
    np.testing.assert_array_equal(augment.shift_flip(tf.constant(image), 64, 3).numpy()[0],
                                  image[top : top + 64, left + 3 : left + 67])


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_decoded_crop_of_the_whole_image_matches_the_decoded_image(ext):
    import cv2

    image = random_image(24, 24)
    encoded = tf.constant(cv2.imencode(ext, image)[1].tobytes())
    crop = augment.decode_random_sized_crop(encoded, 24, area_range=(1.0, 1.0), aspect_range=(1.0, 1.0))
    decoded = augment.to_float(tf.io.decode_image(encoded, channels=3))
    np.testing.assert_allclose(crop.numpy(), decoded.numpy(), atol=1e-5)


def test_train_preprocessing_output():
    import cv2

    encoded = tf.constant(cv2.imencode(".jpg", random_image())[1].tobytes())
    out = augment.preprocess_for_train(encoded, 32)
    assert out.shape == (32, 32, 3) and out.dtype == tf.float32
    assert -2.2 < float(tf.reduce_min(out)) and float(tf.reduce_max(out)) < 2.7


def test_denormalize_inverts_normalize_and_clips():
    image = np.random.default_rng(3).uniform(0, 1, (4, 4, 3)).astype("float32")
    np.testing.assert_allclose(augment.denormalize(augment.normalize(image)).numpy(), image, atol=1e-6)
    assert float(tf.reduce_max(augment.denormalize(tf.fill((2, 2, 3), 10.0)))) == 1.0


def _detail(image):
    """Mean absolute difference between neighbouring pixels: high-frequency content."""
    return float(tf.reduce_mean(tf.abs(image[1:] - image[:-1])))


def test_random_downscale_blurs_to_low_resolution_or_leaves_the_image():
    rng = np.random.default_rng(0)
    image = tf.constant(rng.uniform(0, 1, (112, 112, 3)), tf.float32)
    untouched = augment.random_downscale(image, probability=0.0)
    np.testing.assert_array_equal(untouched.numpy(), image.numpy())
    blurred = augment.random_downscale(image, probability=1.0, size_range=(32, 64))
    assert blurred.shape == image.shape
    assert _detail(blurred) < 0.5 * _detail(image)
    assert 0.0 <= float(tf.reduce_min(blurred)) and float(tf.reduce_max(blurred)) <= 1.0


def test_random_grayscale_makes_channels_equal_or_leaves_the_image():
    image = tf.constant(np.random.default_rng(1).uniform(0, 1, (16, 16, 3)), tf.float32)
    grey = augment.random_grayscale(image, probability=1.0).numpy()
    np.testing.assert_allclose(grey[..., 0], grey[..., 2], atol=1e-6)
    assert np.abs(grey - image.numpy()).max() > 0.05
    np.testing.assert_array_equal(augment.random_grayscale(image, probability=0.0).numpy(), image.numpy())


def test_eval_view_training_crop_is_the_evaluation_view_shifted_not_scaled():
    """--train_view=eval: a window of the evaluation resize at a random offset, same scale, no
    colour change: every crop is one of the windows the centre crop is the middle of."""
    size = 64
    resized = augment.eval_resize_size(size)
    ramp = np.add.outer(np.arange(100), 1000 * np.arange(100)).astype(np.float32)  # a unique value per pixel
    image = np.stack([ramp] * 3, axis=-1) / ramp.max() * 255.0
    encoded = tf.io.encode_png(tf.cast(tf.round(image), tf.uint8))
    reference = augment.resize_shorter(augment.to_float(augment.decode(encoded)), resized).numpy()
    offsets = set()
    for seed in range(12):
        crop = augment.eval_view_crop(encoded, size, seed=seed).numpy()
        assert crop.shape == (size, size, 3)
        matches = [(y, x) for y in range(resized - size + 1) for x in range(resized - size + 1)
                   if np.allclose(reference[y:y + size, x:x + size], crop, atol=1e-4)]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) > 1  # it moves
    pixels = augment.preprocess_for_train(encoded, size, configs.Augmentation(train_view="eval"))
    assert pixels.shape == (size, size, 3)


def test_shifted_center_crop_moves_the_window_and_refuses_to_leave_the_image():
    image = tf.reshape(tf.range(10 * 12, dtype=tf.float32), (10, 12, 1))
    centre = augment.center_crop(image, 6)
    np.testing.assert_array_equal(augment.shifted_center_crop(image, 6, 0, 0), centre)
    np.testing.assert_array_equal(augment.shifted_center_crop(image, 6, 2, -1), image[1:7, 5:11])
    with pytest.raises(tf.errors.InvalidArgumentError, match="leaves the image"):
        augment.shifted_center_crop(image, 6, 4, 0)


def test_old_photo_is_fixed_by_its_seed_blurred_faded_and_in_range():
    image = tf.constant(np.random.default_rng(2).uniform(0, 1, (73, 73, 3)), tf.float32)
    seeds = [tf.constant([17, s], tf.int32) for s in range(40)]
    prints = [augment.old_photo(image, seed).numpy() for seed in seeds]
    np.testing.assert_array_equal(prints[0], augment.old_photo(image, seeds[0]).numpy())  # same seed, same print
    assert np.abs(prints[0] - prints[1]).max() > 0.05  # another seed, another print
    for old in prints:
        assert old.shape == (73, 73, 3) and old.min() >= 0.0 and old.max() <= 1.0
        assert _detail(tf.constant(old)) < 0.6 * _detail(image)  # blurred, whatever the draw
    spread = np.array([np.abs(p[..., 0] - p[..., 2]).mean() for p in prints])
    grey = spread < 0.02  # JPEG's chroma leaves a little colour in a grey print
    assert 0.2 < grey.mean() < 0.6  # 40% grey by design, 30% sepia (red over blue), 30% faded colour
    sepia = [p for p, g in zip(prints, grey) if not g and (p[..., 0] - p[..., 2]).mean() > 0.05]
    assert sepia


def test_random_old_photo_with_probability_zero_or_one():
    image = tf.constant(np.random.default_rng(3).uniform(0, 1, (32, 32, 3)), tf.float32)
    np.testing.assert_array_equal(augment.random_old_photo(image, 0.0).numpy(), image.numpy())
    changed = augment.random_old_photo(image, 1.0)
    assert changed.shape == image.shape and _detail(changed) < 0.6 * _detail(image)


def test_a_records_old_photo_seed_depends_on_its_path_only():
    a = augment.record_seed(tf.constant("faces/a.jpg")).numpy()
    np.testing.assert_array_equal(a, augment.record_seed(tf.constant("faces/a.jpg")).numpy())
    assert (a != augment.record_seed(tf.constant("faces/b.jpg")).numpy()).any()
