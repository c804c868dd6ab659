"""What `alage export` does once its flags are parsed (its usage and flags: `export_flags`)."""

import os

from absl import app

from keras_alage import cli
from keras_alage.cli import export_flags
from keras_alage.models import release
from keras_alage.serving import export, photos
from alage_pipelines import augment, images

FLAGS = export_flags.FLAGS


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
        with_photos = FLAGS.photos and face_crop is not None
        if FLAGS.photos and not with_photos:
            no_crop = (f"{FLAGS.model} records no face crop (face_crop.json beside it or model.json's face_crop), so "
                       "whole photos cannot be cut as its faces were")
            if FLAGS["photos"].present:  # asked for by name: refused; by default: left out, said once
                raise app.UsageError(f"--photos: {no_crop}; give --nophotos for the crop signatures alone.")
            print(f"predict_photos left out: {no_crop}.")
        server = photos.serving_module(opened, crops)  # one network: export.AgeServer; two: ensemble.EnsembleServer
        served = server
        if with_photos:
            served = export.photo_server(server, face_crop, FLAGS.photo_detector, FLAGS.photo_detector_weights,
                                         FLAGS.photo_min_score)
        target = export.export_server(served, FLAGS.export_dir, FLAGS.model_name, FLAGS.version, warmup,
                                      FLAGS.overwrite, face_crop)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        raise app.UsageError(str(error))
    print(f"exported {target} ({', '.join(sorted(served.signatures()))}); face crop: "
          f"{face_crop or 'not recorded beside the model'}")
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
