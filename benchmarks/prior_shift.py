"""Does adapting to a population's age prior help? Measured on validation faces resampled to other
age mixes, before it is used anywhere else.

  python benchmarks/prior_shift.py            # the released model, data/utkface_dlib, about 3 minutes

The model answers its build's training faces (their mean answer is its prior, `prior_shift.source_prior`)
and its held-out faces (centre crop). The held-out faces are then drawn, with replacement, into
populations of --faces faces whose age bands follow the fixed mixes of SCENARIOS, --draws times
each. Each population is answered as is and after `prior_shift.adapt` at every --smoothing, which
sees the answers only, never the labels. Reported: MAE, and the change against answering as is,
with the 2.5-97.5% range over the draws. Writes OUTPUT.json and OUTPUT.md (default
docs/results/releases/prior_shift).
"""

import os

from absl import app, flags

from keras_alage import cli
from keras_alage.models import release
from keras_alage.studies.benchmarks import prior_shift

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("model", None, "Model (default: the released model in models/).")
flags.DEFINE_string("data_dir", os.path.join(REPO, "data", "utkface_dlib"), "The build the model was trained on.")
flags.DEFINE_integer("faces", 500, "Faces per drawn population.")
flags.DEFINE_integer("draws", 30, "Populations drawn per scenario.")
flags.DEFINE_list("smoothing", ["0", "1", "3"], "Prior smoothing (classes) to compare.")
flags.DEFINE_integer("seed", 0, "Random seed of the draws.")
flags.DEFINE_string("output", os.path.join(REPO, "docs", "results", "releases", "prior_shift"), "Output path without extension.")
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    try:
        print(prior_shift.measure(FLAGS.model or release.default_path(), FLAGS.data_dir, FLAGS.faces, FLAGS.draws,
                                  [float(s) for s in FLAGS.smoothing], FLAGS.seed, FLAGS.output))
    except (OSError, ValueError, KeyError) as error:
        raise app.UsageError(str(error))


if __name__ == "__main__":
    cli.run(main)
