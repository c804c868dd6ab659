"""The local weight chosen on two populations: the training set's held-out faces and a second one
(`keras_alage/studies/benchmarks/local_weight_populations.py` says how and what it writes).

  python benchmarks/local_weight_populations.py --views=RUN/held_out_as_built/results.json,\
      RUN/held_out_old_photo/results.json    # the release on FG-NET's 5 subject folds, under a minute
"""

import os

from absl import app, flags

from keras_alage import cli
from keras_alage.models import release
from keras_alage.studies.benchmarks import local_weight_populations

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("model", None, "Released model (default: the one in models/).")
flags.DEFINE_string("data_dir", os.path.join(REPO, "data", "fgnet_release"), "The second population's build, "
                    "cut with the model's crop, in subject-exclusive folds.")
flags.DEFINE_list("views", None, "Reports (evaluate.py --local_weights) of the fixed views: the training set's "
                  "held-out faces, e.g. as built and as old photos.")
flags.DEFINE_list("weights", ["0", "0.1", "0.25", "0.5", "1", "2", "4"], "Local weights to sweep.")
flags.DEFINE_string("peer_answers", os.path.join(REPO, "docs", "results", "peers", "peers_fgnet.json"),
                    "benchmarks/peers_fgnet.py's JSON, for the packaged peer's answers on the same photos ('' for none).")
flags.DEFINE_string("output", os.path.join(REPO, "docs", "results", "releases", "local_weight_populations"),
                    "Output path without extension.")
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    try:
        weights = [float(w) for w in FLAGS.weights]
    except ValueError:
        raise app.UsageError(f"--weights: {FLAGS.weights} are not numbers.")
    try:
        print(local_weight_populations.measure(FLAGS.model or release.default_path(), FLAGS.data_dir, FLAGS.views or [],
                                               weights, FLAGS.peer_answers, FLAGS.output))
    except ValueError as error:
        raise app.UsageError(str(error))


if __name__ == "__main__":
    cli.run(main)
