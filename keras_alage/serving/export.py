"""SavedModel export for TF Serving: `<base>/<model_name>/<version>/` with two signatures.

- `serving_default`: a batch of encoded face crops (JPEG or PNG bytes, cut with the project's
  `alage_pipelines.faces.CropSpec`; base64 in TF Serving's REST JSON) -> expected age, class
  probabilities, global and local ages, attention box. Decoding, the evaluation resize and the
  ten-crop (or centre crop, chosen at export) run inside the graph, as in `scripts/evaluate.py`.
- `predict_preprocessed`: normalised float images [batch, size, size, 3] -> the same outputs.
- `predict_photos` (`PhotoServer`, beside either server's signatures): encoded whole photos -> each
  face's box, keypoints, age and interval, padded with a count: faces found by BlazeFace
  (`face_finder`) and cut inside the graph as `scripts/predict.py --detector=blazeface` cuts them.

The attention LSTM's memory is frozen before export, so an answer never depends on which
requests came before or what else is in the batch. Warm-up requests are written to
`assets.extra/tf_serving_warmup_requests`, so the server traces the graph before the first
real request.
"""

import glob
import os
import shutil
import tempfile
from typing import Dict, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from keras_alage.evaluation import scoring
from keras_alage.models import age_model, attention, heads
from keras_alage.serving import face_finder
from keras_alage.serving.options import MAX_VERSION
from alage_pipelines import MAX_PIXELS, augment, faces, files

OUTPUT_KEYS = ("age", "probs", "global_age", "local_age", "box")
WARMUP_FILE = "tf_serving_warmup_requests"


class AgeServer(tf.Module):
    """The serving graph around a trained age model."""

    def __init__(self, model: keras.Model, crops: str = "ten"):
        super().__init__(name="age_server")
        augment.crop_shape(crops, 1)  # refuses unknown crops
        self.model = model
        self.crops = crops
        self.input_size = int(model.input_shape[1])
        size = self.input_size
        self.serve_encoded = tf.function(
            self._serve_encoded, input_signature=[tf.TensorSpec([None], tf.string, name="images")]
        )
        self.serve_preprocessed = tf.function(
            self._serve_preprocessed, input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")]
        )

    def _outputs(self, outputs) -> Dict[str, tf.Tensor]:
        outputs = {key: tf.cast(outputs[key], tf.float32) for key in OUTPUT_KEYS}
        outputs["age_std"] = heads.age_std(outputs["probs"], self.model.get_layer("age").class_ages)
        return age_model.mask_untrained(outputs, age_model.trained_heads(self.model))

    def _serve_preprocessed(self, images):
        return self._outputs(self.model(images, training=False))

    def _serve_encoded(self, images):
        batch = tf.map_fn(lambda e: self.prepare(augment.decode(e)), images, fn_output_signature=self.views_spec())
        return self.answer_views(batch)

    def prepare(self, image):
        """One decoded uint8 face crop [h, w, 3] -> the network's views of it (`crops`)."""
        return augment.preprocess_for_eval(image, self.input_size, self.crops)

    def views_spec(self) -> tf.TensorSpec:
        return tf.TensorSpec(augment.crop_shape(self.crops, self.input_size), tf.float32)

    def answer_views(self, batch):
        """Outputs for a batch of `prepare`d views (averaged over the crops where there are several)."""
        if self.crops == "center":
            return self._serve_preprocessed(batch)
        averaged = scoring.average_over_crops(lambda x: self.model(x, training=False), batch)
        ages = tf.constant(self.model.get_layer("age").class_ages, tf.float32)
        return self._outputs({
            "age": tf.linalg.matvec(averaged["probs"], ages),
            "probs": averaged["probs"],
            "global_age": tf.linalg.matvec(averaged["global_probs"], ages),
            "local_age": tf.linalg.matvec(averaged["local_probs"], ages),
            # The box of the unmirrored centre crop, as fractions of that crop.
            "box": averaged["box"],
        })

    def signatures(self) -> dict:
        return {"serving_default": self.serve_encoded, "predict_preprocessed": self.serve_preprocessed}


# --- whole photos: faces found and cut inside the graph ---------------------------------------------

PHOTO_SIGNATURE = "predict_photos"
# The per-face answers the photo signature carries from the crop answer, where the model gives them.
FACE_ANSWERS = ("age", "age_low", "age_high", "age_std", "global_age", "local_age", "al_age", "faceapi_age",
                "faceres_age", "faceapi_female")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CROP_JPEG_QUALITY = 95  # `faces.encode_jpeg`'s: libjpeg-turbo decodes TF's and OpenCV's encodings alike


def photo_pixels(encoded) -> tf.Tensor:
    """The pixels a JPEG or PNG announces in its header, read before decoding (int64); anything else
    fails with InvalidArgumentError saying the graph takes JPEG or PNG."""
    is_jpeg = tf.strings.substr(encoded, 0, 2) == b"\xff\xd8"
    is_png = (tf.strings.substr(encoded, 0, 8) == PNG_SIGNATURE) & (tf.strings.length(encoded) >= 24)

    def jpeg():
        shape = tf.cast(tf.image.extract_jpeg_shape(encoded), tf.int64)
        return shape[0] * shape[1]

    def png():  # IHDR: width and height as big-endian 32-bit integers at bytes 16-23
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, 16, 8), tf.uint8), tf.int64)
        width = raw[0] * 2 ** 24 + raw[1] * 2 ** 16 + raw[2] * 2 ** 8 + raw[3]
        height = raw[4] * 2 ** 24 + raw[5] * 2 ** 16 + raw[6] * 2 ** 8 + raw[7]
        return width * height

    def neither():
        with tf.control_dependencies([tf.debugging.Assert(False, ["a photo must be a JPEG or PNG image"])]):
            return tf.constant(0, tf.int64)

    return tf.cond(is_jpeg, jpeg, lambda: tf.cond(is_png, png, neither))


def decode_photo(encoded, max_pixels: int = MAX_PIXELS) -> tf.Tensor:
    """A JPEG or PNG photo -> uint8 RGB [H, W, 3], as `images.read_photo` decodes it (a JPEG with
    libjpeg's accurate integer DCT, OpenCV's; TensorFlow's default, the fast one, moved a face's
    age by 0.02 years), refusing one whose header announces more than `max_pixels` before it is
    decoded (a decompression bomb)."""
    pixels = photo_pixels(encoded)
    with tf.control_dependencies([tf.debugging.Assert(
            pixels <= max_pixels, ["the photo's header announces more pixels than the limit", pixels, max_pixels])]):
        return tf.cond(tf.strings.substr(encoded, 0, 2) == b"\xff\xd8",
                       lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
                       lambda: tf.io.decode_png(encoded, channels=3, dtype=tf.uint8))


def chip_geometry(keypoints, template, used: Sequence[int] = (0, 1, 2, 3)):
    """(centres [n, 2], sides [n], rolls [n]) of the squares whose `template` points (sides of the
    square from its centre, x right and y down on the upright face) best fit each face's `used`
    keypoints [n, 6, 2] by a similarity (least squares over scale, rotation and shift):
    `faces.chip_of_keypoints` in TensorFlow. The roll is the counter-clockwise degrees that make the
    face upright (`faces.Face.angle`)."""
    points = tf.gather(tf.cast(keypoints, tf.float32), list(used), axis=1)  # [n, k, 2]
    template = tf.constant(np.asarray(template, np.float64), tf.float32)  # [k, 2]
    mean_p, mean_t = tf.reduce_mean(points, axis=1), tf.reduce_mean(template, axis=0)  # [n, 2], [2]
    p, t = points - mean_p[:, None], template - mean_t
    norm = tf.maximum(tf.reduce_sum(t ** 2), 1e-12)
    real = tf.reduce_sum(t[:, 0] * p[..., 0] + t[:, 1] * p[..., 1], axis=1) / norm  # conj(t) * p, summed
    imag = tf.reduce_sum(t[:, 0] * p[..., 1] - t[:, 1] * p[..., 0], axis=1) / norm
    centres = mean_p - tf.stack([real * mean_t[0] - imag * mean_t[1], real * mean_t[1] + imag * mean_t[0]], axis=1)
    return centres, tf.sqrt(real ** 2 + imag ** 2), tf.math.atan2(imag, real) * (180.0 / np.pi)


def cut_faces(photo, centres, sizes, angles, spec: faces.CropSpec) -> tf.Tensor:
    """`faces.crop_face` in TensorFlow: each face's crop [n, size, size, 3] uint8 from a uint8
    photo [H, W, 3], upright, borders replicated, shrunk through a warp at native resolution (at most
    four times the output) and an area resize, as the predict path cuts them."""
    image = tf.cast(photo, tf.float32)[None]
    size = spec.size
    scale = 1.0 + spec.margin

    def cut(face):
        centre, box, angle = face[:2], face[2:4], face[4]
        if spec.square:
            box = tf.fill([2], tf.reduce_max(box))
        box = box * scale
        native = tf.cast(tf.round(tf.minimum(tf.reduce_max(box), 4.0 * size)), tf.int32)
        out = tf.maximum(native, size)
        outf = tf.cast(out, tf.float32)
        theta = angle * (np.pi / 180.0)
        cos, sin = tf.cos(theta), tf.sin(theta)
        # photo -> crop: diag(out / box) @ [[cos, sin], [-sin, cos]] (cv2.getRotationMatrix2D), centred;
        # the transform below maps each crop pixel back into the photo.
        sx, sy = box[0] / outf, box[1] / outf
        half = (outf - 1.0) / 2.0
        a0, a1 = cos * sx, -sin * sy
        b0, b1 = sin * sx, cos * sy
        a2 = centre[0] - a0 * half - a1 * half
        b2 = centre[1] - b0 * half - b1 * half
        transform = tf.stack([a0, a1, a2, b0, b1, b2, 0.0, 0.0])[None]
        warped = tf.raw_ops.ImageProjectiveTransformV3(
            images=image, transforms=transform, output_shape=tf.stack([out, out]), fill_value=0.0,
            interpolation="BILINEAR", fill_mode="NEAREST")[0]
        warped = tf.clip_by_value(tf.round(warped), 0.0, 255.0)  # cv2 rounds to uint8 after the warp
        resized = tf.image.resize(warped, [size, size], method="area")
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

    stacked = tf.concat([tf.cast(centres, tf.float32), tf.cast(sizes, tf.float32),
                         tf.cast(angles, tf.float32)[:, None]], axis=1)
    return tf.map_fn(cut, stacked, fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))


def nearest_fit(centres, sides, rolls, face):
    """[cx, cy, side, roll] of the chip fitted again (`centres` [n, 2], `sides`, `rolls` [n]) nearest
    `face`'s centre within `faces.REFINE_NEAR` of its side, else `face` itself: the region may hold
    no face at all (n = 0), where no nearest one is looked for (an arg-min over nothing fails)."""
    distance = tf.norm(centres - face[:2], axis=1)
    distance = tf.where(distance < faces.REFINE_NEAR * face[2], distance, np.inf)

    def nearest():
        best = tf.argmin(distance, output_type=tf.int32)
        return tf.concat([centres[best], [sides[best], rolls[best]]], axis=0)

    return tf.cond(tf.reduce_any(tf.math.is_finite(distance)), nearest, lambda: face)


def detection_copy(photo, max_side: int):
    """The photo shrunk by area so its longer side is at most `max_side`, and the scale applied
    (`faces.detection_copy` in TensorFlow: the copy a detector searches; 1.0 where it fits)."""
    shape = tf.shape(photo)
    longest = tf.cast(tf.maximum(shape[0], shape[1]), tf.float32)
    scale = tf.minimum(1.0, max_side / longest)

    def shrink():
        size = tf.maximum(1, tf.cast(tf.round(tf.cast(shape[:2], tf.float32) * scale), tf.int32))
        resized = tf.image.resize(tf.cast(photo, tf.float32), size, method="area")
        return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)

    return tf.cond(scale < 1.0, shrink, lambda: photo), scale


class PhotoServer(tf.Module):
    """A crop server (`AgeServer`, `ensemble.EnsembleServer`) with a signature for whole photos
    beside its own: `predict_photos` takes encoded photos (JPEG or PNG bytes, tf.string [n]), finds
    the faces as `scripts/predict.py --detector=blazeface` finds them (BlazeFace on the photo shrunk
    to `detection_side`, `face_finder.find_faces`; each face boxed as dlib's chip fitted to its
    keypoints, `template`: `faces.CHIP_KEYPOINTS`, and fitted again on the region around it:
    `refine`), cuts each with the model's `face_crop` and answers the crops, JPEG-encoded as
    predict.py encodes them, with the crop signature itself.

    Its outputs, padded to the most faces of any photo in the request (F): `count` int32 [n] (the
    faces found in each photo; entries past it are zeros), `face_box` float32 [n, F, 4] (x0, y0, x1,
    y1: BlazeFace's box in photo pixels), `face_score` [n, F], `keypoints` [n, F, 6, 2] (BlazeFace's
    eyes, nose tip, mouth and ear tragions in photo pixels), and those of `FACE_ANSWERS` the crop
    answer has, [n, F] each. Faces run left to right (by their chip's centre), as `predict.py`
    lists them. Unlike `predict.py`, no rotation is searched where no upright face is found."""

    def __init__(self, server: tf.Module, detector: keras.Model, face_crop: faces.CropSpec, template,
                 detection_side: int = faces.DETECTION_MAX_SIDE, min_score: float = face_finder.MIN_SCORE,
                 max_faces: int = face_finder.MAX_FACES):
        super().__init__(name="photo_server")
        if face_crop is None:
            raise ValueError("answering whole photos needs the model's face crop (face_crop.json beside it, or "
                             "model.json's face_crop): the network answers faces cut as it was trained on.")
        if not 0.0 < min_score < 1.0 or not 1 <= max_faces <= 1024 or not 16 <= detection_side <= 4096:
            raise ValueError(f"min_score must lie in (0, 1), max_faces in [1, 1024] and detection_side in [16, 4096]; "
                             f"received {min_score}, {max_faces} and {detection_side}.")
        self.server, self.detector = server, detector
        self.face_crop, self.template = face_crop, np.asarray(template, np.float64)
        self.detection_side, self.min_score, self.max_faces = int(detection_side), float(min_score), int(max_faces)
        self.input_size = server.input_size
        if hasattr(server, "al_input_size"):  # read by photos.load_predictor beside predict_crops
            self.al_input_size = server.al_input_size
        self.serve_photos = tf.function(self._serve_photos,
                                        input_signature=[tf.TensorSpec([None], tf.string, name="photos")])

    def locate(self, photo):
        """One decoded photo's faces: BlazeFace's boxes, scores and keypoints (photo pixels, (0, 0)
        the photo's corner), and each face's chip (centre in pixel centres, side, roll), left to
        right, as `faces.KeypointDetector` boxes them for `predict.py`."""
        copy, scale = detection_copy(photo, self.detection_side)
        found = face_finder.find_faces(self.detector, copy, self.min_score, self.max_faces)
        # The finder's points have (0, 0) at the photo's corner; the face path's (`faces.Face`, and
        # `face_detectors.BlazeFaceRunner` for predict.py) at the top-left pixel's centre.
        centres, sides, rolls = chip_geometry(found["keypoints"] - 0.5, self.template)
        centres, sides, rolls = self.refine(copy, centres, sides, rolls)
        centres = (centres + 0.5) / scale - 0.5  # `faces.to_full_photo`: pixel centres map through their edges
        order = tf.argsort(centres[:, 0], stable=True)
        found = {key: tf.gather(tf.cast(found[key], tf.float32), order) / (1.0 if key == "scores" else scale)
                 for key in ("boxes", "scores", "keypoints")}
        return found, tf.gather(centres, order), tf.gather(sides / scale, order), tf.gather(rolls, order)

    def refine(self, image, centres, sides, rolls):
        """`faces.KeypointDetector._refined` in TensorFlow: each chip fitted again to the keypoints
        found on the region of `faces.REFINE_SPAN` chip sides around it (the face then fills a third
        of the detector's input), the refit nearest the first within a quarter of its side; the first
        fit where the region is too small, nearly the whole photo, or holds no face near it."""
        shape = tf.shape(image)
        height, width = shape[0], shape[1]
        longest = tf.cast(tf.maximum(height, width), tf.float32)

        def one(face):
            centre, side = face[:2], face[2]
            half = faces.REFINE_SPAN * side / 2.0
            low = tf.maximum(0, tf.cast(tf.floor(centre - half), tf.int32))
            high = tf.minimum(tf.stack([width, height]), tf.cast(tf.math.ceil(centre + half), tf.int32))
            extent = high - low

            def again():
                region = image[low[1]:high[1], low[0]:high[0]]
                found = face_finder.find_faces(self.detector, region, self.min_score, self.max_faces)
                points = found["keypoints"] - 0.5 + tf.cast(low, tf.float32)
                return nearest_fit(*chip_geometry(points, self.template), face)

            kept = (tf.reduce_min(extent) < faces.MIN_FACE_SIDE) | (
                tf.cast(tf.reduce_max(extent), tf.float32) >= faces.REFINE_WHOLE * longest)
            return tf.cond(kept, lambda: face, again)

        stacked = tf.concat([centres, sides[:, None], rolls[:, None]], axis=1)
        refined = tf.map_fn(one, stacked, fn_output_signature=tf.TensorSpec([4], tf.float32))
        return refined[:, :2], refined[:, 2], refined[:, 3]

    def _serve_photos(self, photos):
        size = self.face_crop.size
        count = tf.shape(photos)[0]

        def array(dtype, shape):
            return tf.TensorArray(dtype, count, infer_shape=False, element_shape=shape)

        crops, boxes, scores = array(tf.uint8, [None, size, size, 3]), array(tf.float32, [None, 4]), \
            array(tf.float32, [None])
        keypoints, counts = array(tf.float32, [None, 6, 2]), tf.TensorArray(tf.int32, count, element_shape=[])
        for i in tf.range(count):  # autograph: a tf.while_loop over the photos
            photo = decode_photo(photos[i])
            found, centres, sides, rolls = self.locate(photo)
            crops = crops.write(i, cut_faces(photo, centres, tf.stack([sides, sides], axis=1), rolls, self.face_crop))
            boxes = boxes.write(i, found["boxes"])
            scores = scores.write(i, found["scores"])
            keypoints = keypoints.write(i, found["keypoints"])
            counts = counts.write(i, tf.shape(centres)[0])
        lengths = tf.cast(counts.stack(), tf.int64)
        # Each crop JPEG-encoded as predict.py encodes it (`faces.encode_jpeg`: the stored crops' form),
        # then answered by the crop signature itself: a photo's faces get the answers of their crops.
        encoded = tf.map_fn(lambda crop: tf.io.encode_jpeg(crop, quality=CROP_JPEG_QUALITY), crops.concat(),
                            fn_output_signature=tf.TensorSpec([], tf.string))
        answered = tf.cond(  # the networks take no empty batch: a photo without faces answers none
            tf.shape(encoded)[0] > 0, lambda: self.server.serve_encoded(encoded),
            lambda: {k: v[:0] for k, v in self.server.serve_encoded(
                tf.io.encode_jpeg(tf.zeros([size, size, 3], tf.uint8))[None]).items()})
        per_face = {key: tf.cast(answered[key], tf.float32) for key in FACE_ANSWERS if key in answered}
        per_face.update(face_box=boxes.concat(), face_score=scores.concat(), keypoints=keypoints.concat())
        outputs = {key: tf.RaggedTensor.from_row_lengths(value, lengths).to_tensor() for key, value in per_face.items()}
        outputs["count"] = tf.cast(lengths, tf.int32)
        return outputs

    def signatures(self) -> dict:
        return {**self.server.signatures(), PHOTO_SIGNATURE: self.serve_photos}




def photo_server(server: tf.Module, face_crop: faces.CropSpec, variant: str = "short", weights: Optional[str] = None,
                 min_score: Optional[float] = None) -> PhotoServer:
    """`server` with the `predict_photos` signature, BlazeFace's `variant` read from `weights` (a
    `blazeface.save_weights` file), else the copy this package carries (`face_finder.carried_weights`); raises
    ValueError or FileNotFoundError naming what is wrong."""
    if variant not in faces.CHIP_KEYPOINTS:
        raise ValueError(f"--photo_detector must be one of {sorted(faces.CHIP_KEYPOINTS)} (BlazeFace's variants); "
                         f"received {variant!r}.")
    detector = face_finder.load_detector(variant, weights)
    return PhotoServer(server, detector, face_crop, faces.CHIP_KEYPOINTS[variant],
                       min_score=face_finder.MIN_SCORE if min_score is None else min_score)


def version_dir(base_dir: str, model_name: str, version: int) -> str:
    if not 1 <= version <= MAX_VERSION:
        raise ValueError(f"TF Serving versions are positive integers up to {MAX_VERSION} (an int64); "
                         f"received {version}.")
    return os.path.join(base_dir, model_name, str(version))


def export_saved_model(
    model: keras.Model,
    base_dir: str,
    model_name: str,
    version: int,
    crops: str = "ten",
    warmup_images=(),
    overwrite: bool = False,
    face_crop=None,
) -> str:
    """Writes the SavedModel to `<base_dir>/<model_name>/<version>` atomically; returns it.

    Args:
      warmup_images: encoded face crops sent as warm-up requests (one request per image, and
        one with all of them as a batch).
      face_crop: the `faces.CropSpec` the model's faces were cut with, recorded in
        `assets.extra/face_crop.json` for clients (scripts/predict.py reads it).
    """
    attention.freeze_attention_state(model)
    return export_server(AgeServer(model, crops), base_dir, model_name, version, warmup_images, overwrite, face_crop)


def export_server(server: tf.Module, base_dir: str, model_name: str, version: int, warmup_images=(),
                  overwrite: bool = False, face_crop=None) -> str:
    """`export_saved_model` of a built serving module (`AgeServer`, `ensemble.EnsembleServer`)."""
    target = version_dir(base_dir, model_name, version)
    if os.path.islink(target) or (os.path.lexists(target) and not os.path.isdir(target)):
        kind = "a symbolic link" if os.path.islink(target) else "not a folder"
        raise FileExistsError(f"{target} is {kind}; an export replaces only a version folder: remove it or give "
                              "another --version.")  # before anything is staged (rmtree refused a link after it)
    if os.path.exists(target) and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite or a new --version.")
    parent = os.path.dirname(target)
    with files.folder_lock(parent, "exporting"):  # one export of this model at a time
        for leftover in glob.glob(os.path.join(parent, f".{version}.exporting-*")):  # of a killed export
            shutil.rmtree(leftover, ignore_errors=True)
        return _export(server, target, model_name, version, warmup_images, face_crop)


def _export(server: tf.Module, target: str, model_name: str, version: int, warmup_images, face_crop) -> str:
    parent = os.path.dirname(target)
    staging = tempfile.mkdtemp(prefix=f".{version}.exporting-", dir=parent)
    os.chmod(staging, 0o755)  # mkdtemp makes it private; the final folder must be readable by a server
    try:
        tf.saved_model.save(
            server,
            staging,
            signatures=server.signatures(),
        )
        if warmup_images:
            inputs = [("serving_default", "images")] + ([(PHOTO_SIGNATURE, "photos")]
                                                         if PHOTO_SIGNATURE in server.signatures() else [])
            write_warmup_requests(os.path.join(staging, "assets.extra", WARMUP_FILE), model_name, warmup_images,
                                  inputs)
        if face_crop is not None:
            faces.write_crop_spec(os.path.join(staging, "assets.extra"), face_crop)
        # the old version stays whole until the new one is in (TF Serving skips dotted names)
        files.replace_folder(staging, target, os.path.join(parent, f".{version}.retired"))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def write_warmup_requests(path: str, model_name: str, encoded_images,
                          inputs: Sequence[Tuple[str, str]] = (("serving_default", "images"),)) -> int:
    """TF Serving warm-up file: PredictionLog records, for each (signature, input name) of `inputs`,
    of each image alone and all of them as one batch. A crop sent as a photo warms `predict_photos`
    too (its first call took 13 s here, the next 0.2 s: release v5 on 2 busy cores)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    images = list(encoded_images)
    batches = [[image] for image in images] + ([images] if len(images) > 1 else [])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for signature, name in inputs:
            for batch in batches:
                request = predict_pb2.PredictRequest(
                    model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
                )
                request.inputs[name].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))
                log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
                writer.write(log.SerializeToString())
    return len(batches) * len(inputs)


# --- optional formats: TFLite (LiteRT) and ONNX, for preprocessed float input ----------------------


def _preprocessed_function(model: keras.Model):
    """The `predict_preprocessed` graph with the gather-based crop (TFLite and ONNX have no
    CropAndResize), frozen attention memory, outputs in `sorted(OUTPUT_KEYS)` order."""
    attention.freeze_attention_state(model)
    attention.use_xla_compatible_crop(model)
    try:
        server = AgeServer(model, "center")
        size = server.input_size

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
        def preprocessed(images):
            outputs = server._serve_preprocessed(images)
            return {key: outputs[key] for key in OUTPUT_KEYS}  # the Keras outputs, compared one to one

        return preprocessed.get_concrete_function()
    finally:
        attention.use_xla_compatible_crop(model, False)


def _max_difference(expected: Dict[str, np.ndarray], got: Dict[str, np.ndarray]) -> float:
    """Largest absolute difference; NaN in both (an untrained head's outputs) counts as equal,
    NaN in one only as infinitely different."""
    largest = 0.0
    for key in OUTPUT_KEYS:
        a, b = np.asarray(got[key], np.float64), np.asarray(expected[key], np.float64)
        both = np.isnan(a) & np.isnan(b)
        difference = np.where(both, 0.0, np.abs(a - b))
        largest = max(largest, float(np.max(np.nan_to_num(difference, nan=np.inf))) if difference.size else 0.0)
    return largest


def _reference(model: keras.Model, probe):
    outputs = age_model.mask_untrained(model(probe, training=False), age_model.trained_heads(model))
    return {k: keras.ops.convert_to_numpy(outputs[k]) for k in OUTPUT_KEYS}


def run_tflite(model_content: bytes, images) -> Dict[str, np.ndarray]:
    """Runs a converted model on a float batch with the LiteRT interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_content)
    source = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(source["index"], list(images.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(source["index"], images)
    interpreter.invoke()
    details = sorted(interpreter.get_output_details(), key=lambda d: (len(d["name"]), d["name"]))
    return {key: interpreter.get_tensor(d["index"]) for key, d in zip(sorted(OUTPUT_KEYS), details)}


def export_tflite(model: keras.Model, path: str, probe, tolerance: float = 1e-3) -> float:
    """Writes a LiteRT (.tflite) model of `predict_preprocessed`; returns its largest
    difference from Keras on `probe` and refuses to write when it exceeds `tolerance`."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    # Variables are folded into constants first: converted as resource variables they come
    # out uninitialised.
    frozen = convert_variables_to_constants_v2(_preprocessed_function(model))
    content = tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert()
    difference = _max_difference(_reference(model, probe), run_tflite(content, probe))
    if difference > tolerance:
        raise ValueError(f"The TFLite model differs from Keras by {difference:.2e} (tolerance {tolerance}).")
    files.write_atomically(path, content)
    return difference


def export_onnx(model: keras.Model, path: str, probe, tolerance: float = 1e-3, opset: int = 17) -> float:
    """Writes an ONNX model of `predict_preprocessed` (checked with onnxruntime like TFLite)."""
    import onnxruntime
    import tf2onnx

    function = _preprocessed_function(model)
    spec = [tf.TensorSpec([None] + list(probe.shape[1:]), tf.float32, name="images")]
    proto, _ = tf2onnx.convert.from_function(tf.function(lambda images: function(images)), spec, opset=opset)
    content = proto.SerializeToString()
    session = onnxruntime.InferenceSession(content)
    names = [o.name for o in session.get_outputs()]
    got = dict(zip(names, session.run(None, {session.get_inputs()[0].name: probe})))
    difference = _max_difference(_reference(model, probe), got)
    if difference > tolerance:
        raise ValueError(f"The ONNX model differs from Keras by {difference:.2e} (tolerance {tolerance}).")
    files.write_atomically(path, content)
    return difference
