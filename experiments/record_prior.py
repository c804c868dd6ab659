"""Measures a released model's own age prior on its training faces and records it in its model.json,
so that `predict.py --adapt_prior` can move answers to another population's ages.

  python experiments/record_prior.py --model=models/al_dlib_resnet_utkface --data_dir=data/utkface_dlib \
      --smoothing_from=docs/results/releases/prior_shift.json

The prior is the release's mean answer (combined head, centre crop) over the build's training
side; --smoothing is the one benchmarks/prior_shift.py chose on validation faces.
"""

from absl import app, flags

from keras_alage import cli
from keras_alage.studies.releases import al_model

flags.DEFINE_string("model", None, "Released model folder.")
flags.DEFINE_string("data_dir", None, "The TFRecord build it was trained on.")
flags.DEFINE_float("smoothing", None, "Prior smoothing in classes for prior_shift.adapt.")
flags.DEFINE_string("smoothing_from", None, "Or: the smoothing benchmarks/prior_shift.py chose (its OUTPUT.json).")
flags.mark_flags_as_required(["model", "data_dir"])
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    if (FLAGS.smoothing is None) == (FLAGS.smoothing_from is None):
        raise app.UsageError("Give exactly one of --smoothing and --smoothing_from.")
    try:
        smoothing = FLAGS.smoothing if FLAGS.smoothing_from is None else al_model.chosen_smoothing(FLAGS.smoothing_from)
        print(al_model.record_prior(FLAGS.model, FLAGS.data_dir, smoothing))
    except (OSError, ValueError, KeyError) as error:
        raise app.UsageError(str(error))


if __name__ == "__main__":
    cli.run(main)
