"""What `alage predict` does once its flags are parsed (its usage and flags: `predict_flags`)."""

import tensorflow as tf
from absl import app

from keras_alage.cli import compute, predict_flags
from keras_alage.models import release
from keras_alage.serving import answers, photos

FLAGS = predict_flags.FLAGS


def say(text: str) -> None:
    print(text, flush=True)


def main(argv):
    if len(argv) < 2 and FLAGS.camera is None:
        raise app.UsageError("Give one or more photos, videos or folders to predict (or --camera).")
    compute.set_compute(FLAGS)  # before any network is loaded, traced or called
    outputs = answers.Outputs(FLAGS.output, FLAGS.draw)
    answers.check_outputs(outputs, photos.image_paths(argv[1:]), FLAGS.overwrite)  # before the model loads
    model_path = FLAGS.model or release.default_path()
    try:
        answerer = answers.open_answerer(model_path, FLAGS.crops, FLAGS.crop_size, FLAGS.crop_margin,
                                         FLAGS.detector, FLAGS.fallback_detector, FLAGS.min_confidence,
                                         FLAGS.no_face, FLAGS.batch_faces)
    except photos.CropMismatch as error:
        raise app.UsageError(f"--detector={FLAGS.detector}: {error}")
    except (FileNotFoundError, ValueError, OSError, tf.errors.OpError) as error:
        raise app.UsageError(f"--model={model_path}: {error}")
    predict, spec = answerer.predictor, answerer.spec
    prior = None
    if FLAGS.adapt_prior:
        prior = predict.prior  # read with the model, in the same visit
        if prior is None:
            raise app.UsageError(f"--adapt_prior: {model_path} records no training prior (a one-network release's folder "
                                 "does, once experiments/record_prior.py has measured it; a two-network release has "
                                 "none: the prior moves one network's distribution, not the combined answer).")
    say(f"face crop: {spec.detector} box, size {spec.size}, margin {spec.margin:g}"
        f"{'' if predict.face_crop else ' (none recorded with the model: defaults or flags)'}")
    summary = answers.answer_inputs(argv[1:], answerer, outputs, FLAGS.camera, prior, FLAGS.max_frames, log=say,
                                    overwrite=FLAGS.overwrite)
    if summary.answered_nothing:
        raise app.UsageError(f"no photo could be answered ({summary.skipped} skipped; reasons above).")
