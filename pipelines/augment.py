"""Image augmentation and evaluation crops as pure TensorFlow functions.

Training follows fb.resnet.torch, which the paper's "scale and aspect ratio augmentation"
cites: a random crop of random area and aspect ratio resized to the input size, a
horizontal flip, colour jitter and AlexNet-style PCA lighting noise. Evaluation resizes to
256 (for a 224 input) and takes ten crops: four corners, the centre and their mirror images.
Images are float32 RGB in [0, 1] here; `normalize` comes last.
"""

from typing import Optional, Tuple

import tensorflow as tf

from alage_pipelines.configs import MIN_CROP_AREA, Augmentation
from alage_pipelines.images import IMAGENET_MEAN, IMAGENET_STD
from alage_pipelines.options import CROPS, TRAIN_VIEWS

# fb.resnet.torch's ImageNet PCA of RGB pixels (on [0, 1] values).
PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
PCA_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)


# fb.resnet.torch's random-sized crop: 8-100% of the area, aspect ratio 3/4-4/3.
AREA_RANGE = (MIN_CROP_AREA, 1.0)
ASPECT_RANGE = (3.0 / 4.0, 4.0 / 3.0)


def decode(encoded):
    """Encoded image -> uint8 RGB [H, W, 3] (greyscale is expanded, animations take frame 0)."""
    return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def to_float(image_uint8):
    """uint8 [0, 255] -> float32 [0, 1]."""
    return tf.image.convert_image_dtype(image_uint8, tf.float32)


def _sample_crop_window(shape, area_range, aspect_range, seed):
    """(offset_y, offset_x, height, width) of a random crop of an image of `shape`."""
    begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
        shape,
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        min_object_covered=0.0,
        aspect_ratio_range=aspect_range,
        area_range=area_range,
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
        seed=seed or 0,
    )
    return tf.stack([begin[0], begin[1], crop_size[0], crop_size[1]])


def random_sized_crop(
    image,
    size: int,
    area_range: Tuple[float, float] = AREA_RANGE,
    aspect_range: Tuple[float, float] = ASPECT_RANGE,
    seed=None,
):
    """A random crop covering `area_range` of the image with aspect in `aspect_range`, resized to size."""
    window = _sample_crop_window(tf.shape(image), area_range, aspect_range, seed)
    crop = image[window[0] : window[0] + window[2], window[1] : window[1] + window[3]]
    return tf.image.resize(crop, (size, size), method="bilinear")


def decode_random_sized_crop(
    encoded,
    size: int,
    area_range: Tuple[float, float] = AREA_RANGE,
    aspect_range: Tuple[float, float] = ASPECT_RANGE,
    seed=None,
):
    """`random_sized_crop` of encoded bytes; JPEGs decode only the crop window (much faster)."""

    def jpeg():
        window = _sample_crop_window(tf.image.extract_jpeg_shape(encoded), area_range, aspect_range, seed)
        crop = tf.io.decode_and_crop_jpeg(encoded, window, channels=3)
        return tf.image.resize(to_float(crop), (size, size), method="bilinear")

    def other():
        return random_sized_crop(to_float(decode(encoded)), size, area_range, aspect_range, seed)

    return tf.cond(tf.io.is_jpeg(encoded), jpeg, other)


def random_flip(image, seed=None):
    return tf.image.random_flip_left_right(image, seed=seed)


def color_jitter(image, brightness=0.4, contrast=0.4, saturation=0.4, seed=None):
    """Random brightness, contrast and saturation, each scaled by a factor in [1 - s, 1 + s]."""
    if brightness:
        factor = tf.random.uniform([], 1 - brightness, 1 + brightness, seed=seed)
        image = image * factor
    if contrast:
        factor = tf.random.uniform([], 1 - contrast, 1 + contrast, seed=seed)
        mean = tf.reduce_mean(tf.image.rgb_to_grayscale(image))
        image = (image - mean) * factor + mean
    if saturation:
        factor = tf.random.uniform([], 1 - saturation, 1 + saturation, seed=seed)
        grey = tf.image.rgb_to_grayscale(image)
        image = (image - grey) * factor + grey
    return tf.clip_by_value(image, 0.0, 1.0)


def lighting(image, alpha_std=0.1, seed=None):
    """AlexNet PCA lighting: adds eigvec @ (alpha * eigval) to every pixel, alpha ~ N(0, std)."""
    if not alpha_std:
        return image
    alpha = tf.random.normal([3], stddev=alpha_std, seed=seed)
    rgb = tf.linalg.matvec(tf.constant(PCA_EIGVEC), alpha * tf.constant(PCA_EIGVAL))
    return tf.clip_by_value(image + rgb, 0.0, 1.0)


def random_downscale(image, probability: float = 0.5, size_range: Tuple[int, int] = (32, 64), seed=None):
    """With `probability`, shrinks the image to a random side in `size_range` and back up.

    Trains a model on sharp and low-resolution faces alike (UTKFace's 200 px chips beside its
    64 px ones), so that blur does not tell it an age group.
    """
    if probability <= 0:
        return image
    shape = tf.shape(image)[:2]

    def blur():
        side = tf.random.uniform([], size_range[0], size_range[1] + 1, dtype=tf.int32, seed=seed)
        small = tf.image.resize(image, (side, side), method="area")
        return tf.image.resize(small, shape, method="bilinear")

    return tf.cond(tf.random.uniform([], seed=seed) < probability, blur, lambda: image)


def random_grayscale(image, probability: float = 0.0, seed=None):
    """With `probability`, the image's grey version in all three channels: old scanned and
    greyscale photos (FG-NET has 175 of 1,002) should not look like a different age group."""
    if probability <= 0:
        return image
    grey = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))
    return tf.cond(tf.random.uniform([], seed=seed) < probability, lambda: grey, lambda: image)


# An old print, scanned: the shift between faces of today and FG-NET's photos of the 1950s-90s.
OLD_PHOTO_SHRINK = (0.31, 0.69)  # blur: shrunk to this share of the side and back (20-44 px at 64)
OLD_PHOTO_CONTRAST = (0.6, 1.0)
OLD_PHOTO_BRIGHTNESS = 0.1  # +- offset
OLD_PHOTO_GRAIN = 0.04  # largest standard deviation of the grain
OLD_PHOTO_JPEG = (25, 60)  # JPEG quality of the re-encoding
SEPIA = (1.07, 0.95, 0.75)


def old_photo(image, seed):
    """`image` as an old scanned print, drawn from `seed` (a [2] int32 tensor: the same seed gives
    the same print): grey (40%), sepia (30%) or faded colour, blurred by shrinking, contrast and
    brightness changed, film grain, JPEG re-encoded. Any image side; blur is relative to it.

    Both a training augmentation (`random_old_photo`) and a fixed shift for validation
    (`record_seed`): UTKFace faces seen as old photos are a validation population of the kind
    FG-NET is, made without reading FG-NET.
    """
    seed = tf.convert_to_tensor(seed, tf.int32)
    static_shape = image.shape

    def stream(index):  # one independent stateless seed per random choice
        return seed + tf.constant([0, 7919]) * index

    def draw(index, low=0.0, high=1.0):
        return tf.random.stateless_uniform([], stream(index), low, high)

    shape = tf.shape(image)[:2]
    grey = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))
    tone = draw(1)
    image = tf.where(tone < 0.4, grey, tf.where(tone < 0.7, grey * tf.constant(SEPIA), image))
    small = tf.cast(tf.round(tf.cast(shape, tf.float32) * draw(2, *OLD_PHOTO_SHRINK)), tf.int32)
    image = tf.image.resize(tf.image.resize(image, small, method="area"), shape, method="bilinear")
    mean = tf.reduce_mean(image)
    image = (image - mean) * draw(3, *OLD_PHOTO_CONTRAST) + mean + draw(4, -OLD_PHOTO_BRIGHTNESS, OLD_PHOTO_BRIGHTNESS)
    grain = tf.random.stateless_normal(tf.shape(image), stream(5))
    image = tf.clip_by_value(image + grain * draw(6, 0.0, OLD_PHOTO_GRAIN), 0.0, 1.0)
    quality = tf.cast(draw(7, OLD_PHOTO_JPEG[0], OLD_PHOTO_JPEG[1] + 1), tf.int32)
    return tf.ensure_shape(tf.image.adjust_jpeg_quality(image, quality), static_shape)


def random_old_photo(image, probability: float = 0.0, seed=None):
    """With `probability`, `old_photo` of the image with a fresh seed."""
    if probability <= 0:
        return image
    draw_seed = tf.random.uniform([2], 0, 2 ** 31 - 1, dtype=tf.int32, seed=seed)
    return tf.cond(tf.random.uniform([], seed=seed) < probability, lambda: old_photo(image, draw_seed),
                   lambda: image)


def record_seed(path):
    """A [2] int32 seed fixed by a record's path: the same face gets the same old print in every
    evaluation, whatever the order or batch."""
    return tf.stack([tf.constant(17, tf.int32),
                     tf.cast(tf.strings.to_hash_bucket_fast(path, 2 ** 30), tf.int32)])


def normalize(image):
    """Removes the ImageNet mean and scales by its standard deviation, per channel."""
    return (image - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)


def denormalize(image):
    """The inverse of `normalize`, clipped to [0, 1]: model inputs back to viewable pixels."""
    return tf.clip_by_value(image * tf.constant(IMAGENET_STD) + tf.constant(IMAGENET_MEAN), 0.0, 1.0)


def resize_shorter(image, size: int):
    """Resizes so that the shorter side is `size`, keeping the aspect ratio."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.cast(size, tf.float32) / tf.reduce_min(shape)
    new = tf.cast(tf.round(shape * scale), tf.int32)
    return tf.image.resize(image, new, method="bilinear", antialias=True)


def eval_resize_size(input_size: int) -> int:
    """256 for a 224 input, scaled alike for other input sizes."""
    return int(round(input_size * 256 / 224))


def center_crop(image, size: int):
    shape = tf.shape(image)
    top, left = (shape[0] - size) // 2, (shape[1] - size) // 2
    return image[top : top + size, left : left + size]


def shifted_center_crop(image, size: int, dx: int, dy: int):
    """The centre window moved right by `dx` and down by `dy` pixels (so the face moves left and up
    in the crop); for testing whether attention follows the face."""
    shape = tf.shape(image)
    top, left = (shape[0] - size) // 2 + dy, (shape[1] - size) // 2 + dx
    tf.debugging.assert_non_negative(tf.stack([top, left, shape[0] - size - top, shape[1] - size - left]),
                                     message="the shifted window leaves the image")
    return image[top : top + size, left : left + size]


CENTER_CROP = 4  # index of the unmirrored centre crop in `ten_crop`


def shift_pixels(size: int) -> int:
    """How far `shift_flip` moves the centre crop: 1/32 of the input side (2 px at 64, chosen on
    validation among 1, 2 and 3 px), at least 1."""
    return max(1, round(size / 32))


def shift_flip(image, size: int, shift: Optional[int] = None):
    """[10, size, size, 3]: the centre moved right, left, down and up by `shift` pixels (None:
    `shift_pixels`), the centre, then their mirrors; laid out like `ten_crop`, so the unmirrored
    centre is `CENTER_CROP`."""
    d = shift_pixels(size) if shift is None else shift
    crops = [shifted_center_crop(image, size, dx, dy) for dx, dy in ((d, 0), (-d, 0), (0, d), (0, -d))]
    crops = tf.stack(crops + [center_crop(image, size)])
    return tf.concat([crops, tf.reverse(crops, axis=[2])], axis=0)


def centre_crop_index(count: int) -> int:
    """Index of the unmirrored centre crop among `count` evaluation crops (10: ten or shift_flip,
    2: center_flip)."""
    indices = {10: CENTER_CROP, 2: 0}
    if count not in indices:
        raise ValueError(f"no evaluation crops come {count} to a face; expected 10 or 2.")
    return indices[count]


def crop_shape(crops: str, size: int) -> list:
    """The shape of one face's evaluation crops: [10 or 2, s, s, 3], or [s, s, 3] for the centre."""
    counts = {"ten": [10], "center": [], "center_flip": [2], "shift_flip": [10]}
    if crops not in counts:
        raise ValueError(f"crops must be one of {CROPS}; received {crops!r}.")
    return counts[crops] + [size, size, 3]


def ten_crop(image, size: int):
    """[10, size, size, 3]: top-left, top-right, bottom-left, bottom-right, centre, then their flips."""
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    crops = [
        image[:size, :size],
        image[:size, width - size :],
        image[height - size :, :size],
        image[height - size :, width - size :],
        center_crop(image, size),
    ]
    crops = tf.stack(crops)
    return tf.concat([crops, tf.reverse(crops, axis=[2])], axis=0)


def eval_view_crop(encoded, input_size: int, seed=None):
    """The evaluation view (shorter side resized to 256/224 of the input), cut at a random
    position instead of the centre: a few pixels of shift, no change of scale. For networks
    whose function is defined on one view of the face, e.g. dlib's on its face chip."""
    image = resize_shorter(to_float(decode(encoded)), eval_resize_size(input_size))
    return tf.image.random_crop(image, [input_size, input_size, 3], seed=seed)


def preprocess_for_train(encoded, input_size: int, augmentation: Augmentation = Augmentation()):
    """Encoded face (JPEG/PNG bytes) -> augmented, normalised [input_size, input_size, 3] float32.

    `augmentation.train_view` "paper": fb.resnet.torch's random-sized crop (`area_range`),
    colour jitter and lighting (with `jitter`); "eval": `eval_view_crop`, no colour change. Both
    flip. `downscale`, `grayscale`, `old_photo`: probabilities of `random_downscale`,
    `random_grayscale` and `random_old_photo` (0: never, as the paper)."""
    jitter = augmentation.jitter
    if augmentation.train_view == "eval":
        image = eval_view_crop(encoded, input_size)
        jitter = False
    else:
        image = decode_random_sized_crop(encoded, input_size, area_range=augmentation.area_range)
    image = random_downscale(image, augmentation.downscale)
    image = random_flip(image)
    if jitter:
        image = lighting(color_jitter(image))
    image = random_grayscale(image, augmentation.grayscale)
    image = random_old_photo(image, augmentation.old_photo)
    return normalize(image)


def preprocess_for_eval(image_uint8, input_size: int, crops: str = "ten", old_photo_seed=None,
                        shift: Optional[int] = None):
    """Resize the shorter side to 256/224 of the input, then ten crops or `shift_flip`'s ten
    ([10, s, s, 3]; `shift` its distance, None: `shift_pixels`), the centre and its mirror
    ([2, s, s, 3]) or the centre. With `old_photo_seed`, the resized face is first made that
    `old_photo`."""
    image = resize_shorter(to_float(image_uint8), eval_resize_size(input_size))
    if old_photo_seed is not None:
        image = old_photo(image, old_photo_seed)
    if crops == "ten":
        return normalize(ten_crop(image, input_size))
    if crops == "center":
        return normalize(center_crop(image, input_size))
    if crops == "shift_flip":
        return normalize(shift_flip(image, input_size, shift))
    if crops == "center_flip":
        centre = center_crop(image, input_size)
        return normalize(tf.stack([centre, tf.reverse(centre, axis=[1])]))
    raise ValueError(f"crops must be one of {CROPS}; received {crops!r}.")
