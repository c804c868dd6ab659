"""Exports a trained age model as a SavedModel for TF Serving.

  python scripts/export.py --model=runs/fgnet/attention/fold0/model.keras \
      --export_dir=serving --model_name=age --version=1

Writes serving/age/1/ with the `serving_default` (encoded face crops) and
`predict_preprocessed` (float tensors) signatures, and warm-up requests made from
--warmup_images (face crops, e.g. a few records of the build). See the README for serving.
"""

import os

from absl import app, flags

from keras_alage import cli
from keras_alage.models import release
from keras_alage.serving import export, photos
from alage_pipelines import augment, images

flags.DEFINE_string("model", None, "Trained .keras model.")
flags.DEFINE_string("export_dir", "serving", "TF Serving base folder.")
flags.DEFINE_string("model_name", "age", "Model name (the folder under --export_dir).")
flags.DEFINE_integer("version", 1, "Version number (the folder under the model name).")
flags.DEFINE_enum("crops", None, list(augment.CROPS), "Crops inside the graph: ten "
                  "(the paper), the centre, the centre and its mirror, or the centre shifted four ways and all "
                  "mirrored; default: a released model's recorded crops, else ten.")
flags.DEFINE_string("warmup_images", None, "Glob of face-crop images for the warm-up requests (up to 8 used).")
flags.DEFINE_bool("overwrite", False, "Replace an existing version.")
flags.DEFINE_bool("tflite", False, "Also write <export_dir>/<model_name>-<version>.tflite (LiteRT, float input).")
flags.DEFINE_bool("onnx", False, "Also write <export_dir>/<model_name>-<version>.onnx (float input).")
flags.mark_flags_as_required(["model"])
cli.require_positive("version")
flags.register_validator("version", lambda value: value is None or value <= export.MAX_VERSION,
                         message=f"--version must be at most {export.MAX_VERSION} (TF Serving reads it as an int64)")
FLAGS = flags.FLAGS


def warmup_image(path: str) -> bytes:
    """The bytes of a warm-up face crop, checked as a JPEG or PNG image that decodes: TF Serving
    replays warm-up requests at load time and refuses to load a model whose warm-up fails."""

    try:
        data, _ = images.read_photo(path)
    except images.ImageError as error:
        raise app.UsageError(f"--warmup_images: {path}: {error.reason}")
    if not (data.startswith(b"\xff\xd8") or data.startswith(b"\x89PNG")):
        raise app.UsageError(f"--warmup_images: {path}: not a JPEG or PNG (the serving signature decodes those)")
    return data


def main(argv):
    cli.no_arguments(argv)

    warmup = []
    if FLAGS.warmup_images:
        paths = cli.matching_files(FLAGS.warmup_images, "warmup_images", limit=8)
        warmup = [warmup_image(p) for p in paths]
    try:
        opened = release.open_model_path(FLAGS.model)  # the crop: written by training, or in model.json
        if opened.two_networks and (FLAGS.tflite or FLAGS.onnx):
            raise app.UsageError(f"--tflite/--onnx: {FLAGS.model} answers with two networks on encoded crops; those "
                                 "float-input formats cover one-network models (e.g. models/al_dlib_resnet_utkface).")
        crops, face_crop = FLAGS.crops or opened.crops or "ten", opened.face_crop
        server = photos.serving_module(opened, crops)  # one network: export.AgeServer; two: ensemble.EnsembleServer
        target = export.export_server(server, FLAGS.export_dir, FLAGS.model_name, FLAGS.version, warmup,
                                      FLAGS.overwrite, face_crop)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        raise app.UsageError(str(error))
    print(f"exported {target}; face crop: {face_crop or 'not recorded beside the model'}")
    if FLAGS.tflite or FLAGS.onnx:
        import numpy as np

        model = server.model  # an AgeServer: two-network releases were refused above
        size = int(model.input_shape[1])
        if warmup:
            probe = np.stack([augment.preprocess_for_eval(augment.decode(e), size, "center").numpy() for e in warmup])
        else:
            probe = np.random.default_rng(0).normal(size=(4, size, size, 3)).astype("float32")
        stem = os.path.join(FLAGS.export_dir, f"{FLAGS.model_name}-{FLAGS.version}")
        if FLAGS.tflite:
            difference = export.export_tflite(model, stem + ".tflite", probe)
            print(f"exported {stem}.tflite (largest difference from Keras {difference:.1e})")
        if FLAGS.onnx:
            difference = export.export_onnx(model, stem + ".onnx", probe)
            print(f"exported {stem}.onnx (largest difference from Keras {difference:.1e})")


def run() -> None:
    """The command's entry point (`scripts/export.py`, `alage export`)."""
    cli.run(main)


if __name__ == "__main__":
    run()
