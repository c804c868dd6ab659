"""SavedModel export for TF Serving: `<base>/<model_name>/<version>/` with two signatures.

- `serving_default`: a batch of encoded face crops (JPEG or PNG bytes, cut with the project's
  `alage_pipelines.faces.CropSpec`; base64 in TF Serving's REST JSON) -> expected age, class
  probabilities, global and local ages, attention box. Decoding, the evaluation resize and the
  ten-crop (or centre crop, chosen at export) run inside the graph, as in `scripts/evaluate.py`.
- `predict_preprocessed`: normalised float images [batch, size, size, 3] -> the same outputs.

The attention LSTM's memory is frozen before export, so an answer never depends on which
requests came before or what else is in the batch. Warm-up requests are written to
`assets.extra/tf_serving_warmup_requests`, so the server traces the graph before the first
real request.
"""

import glob
import os
import shutil
import tempfile
from typing import Dict

import keras
import numpy as np
import tensorflow as tf

from keras_alage.evaluation import scoring
from keras_alage.models import age_model, attention, heads
from keras_alage.serving.options import MAX_VERSION
from alage_pipelines import augment, faces, files

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
            write_warmup_requests(os.path.join(staging, "assets.extra", WARMUP_FILE), model_name, warmup_images)
        if face_crop is not None:
            faces.write_crop_spec(os.path.join(staging, "assets.extra"), face_crop)
        # the old version stays whole until the new one is in (TF Serving skips dotted names)
        files.replace_folder(staging, target, os.path.join(parent, f".{version}.retired"))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def write_warmup_requests(path: str, model_name: str, encoded_images) -> int:
    """TF Serving warm-up file: PredictionLog records of `serving_default` requests."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    images = list(encoded_images)
    batches = [[image] for image in images] + ([images] if len(images) > 1 else [])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path) as writer:
        for batch in batches:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default")
            )
            request.inputs["images"].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return len(batches)


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
