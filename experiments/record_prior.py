"""Measures a released model's own age prior on its training faces and records it in its model.json,
so that `predict.py --adapt_prior` can move answers to another population's ages.

  python experiments/record_prior.py --model=models/al_dlib_resnet_utkface --data_dir=data/utkface_dlib \
      --smoothing_from=docs/results/releases/prior_shift.json

The prior is the release's mean answer (combined head, centre crop) over the build's training
side; --smoothing is the one benchmarks/prior_shift.py chose on validation faces.
"""

import json
import os

from absl import app, flags

from keras_alage import cli
from keras_alage.evaluation import metrics, run_folders
from keras_alage.models import release
from keras_alage.serving import prior_shift

flags.DEFINE_string("model", None, "Released model folder.")
flags.DEFINE_string("data_dir", None, "The TFRecord build it was trained on.")
flags.DEFINE_float("smoothing", None, "Prior smoothing in classes for prior_shift.adapt.")
flags.DEFINE_string("smoothing_from", None, "Or: the smoothing benchmarks/prior_shift.py chose (its OUTPUT.json).")
flags.mark_flags_as_required(["model", "data_dir"])
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)

    if not release.is_release(FLAGS.model):
        raise app.UsageError(f"--model={FLAGS.model} is not a released model's folder (model.json).")
    if (FLAGS.smoothing is None) == (FLAGS.smoothing_from is None):
        raise app.UsageError("Give exactly one of --smoothing and --smoothing_from.")
    if FLAGS.smoothing_from:
        try:
            with open(FLAGS.smoothing_from, encoding="utf-8") as f:
                FLAGS.smoothing = float(json.load(f)["chosen_smoothing"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise app.UsageError(f"--smoothing_from={FLAGS.smoothing_from}: no chosen smoothing in it ({error}).")
    if FLAGS.smoothing < 0:
        raise app.UsageError(f"--smoothing must be 0 or more; received {FLAGS.smoothing}.")
    try:
        model, _, description = release.load(FLAGS.model)
        answers = run_folders.answer_side(model, FLAGS.data_dir, "train")
        prior = prior_shift.source_prior(answers["combined"])
        release.record_prior(FLAGS.model, prior, FLAGS.smoothing,
                             f"{os.path.basename(os.path.normpath(FLAGS.data_dir))} training side, "
                             f"{len(answers['combined'])} faces, centre crop")
    except (OSError, ValueError, KeyError) as error:
        raise app.UsageError(str(error))
    mean = float(metrics.expected_age([prior], description["class_ages"])[0])
    print(f"recorded the prior of {FLAGS.model} ({len(answers['combined'])} training faces; mean age {mean:.1f}, "
          f"smoothing {FLAGS.smoothing:g})")


if __name__ == "__main__":
    cli.run(main)
