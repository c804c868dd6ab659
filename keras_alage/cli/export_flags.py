"""Exports a trained age model as a SavedModel for TF Serving.

  python scripts/export.py --model=runs/fgnet/attention/fold0/model.keras \
      --export_dir=serving --model_name=age --version=1

Writes serving/age/1/ with the `serving_default` (encoded face crops) and
`predict_preprocessed` (float tensors) signatures, and warm-up requests made from
--warmup_images (face crops, e.g. a few records of the build). See the README for serving.
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
flags.mark_flags_as_required(["model"])
cli.require_positive("version")
flags.register_validator("version", lambda value: value is None or value <= MAX_VERSION,
                         message=f"--version must be at most {MAX_VERSION} (TF Serving reads it as an int64)")
FLAGS = flags.FLAGS
