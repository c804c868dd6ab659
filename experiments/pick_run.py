"""Prints the evaluation file with the lowest value of a metric (ties: the first given).

  python experiments/pick_run.py --metric=global.mae runs/a/evaluation.json runs/b/evaluation.json

Used by experiments/release_model.sh to continue the better of two equal-budget starts.
"""

import sys

from absl import app, flags

from keras_alage import cli
from keras_alage.studies import reporting

flags.DEFINE_string("metric", "combined.mae", "Dotted key of the metric in each JSON file (lower is better).")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) < 3:
        raise app.UsageError("Give two or more evaluation JSON files.")
    try:
        scores = reporting.metrics_of(argv[1:], FLAGS.metric)
    except ValueError as error:
        raise app.UsageError(str(error))
    for score, _, path in scores:
        print(f"{path}: {FLAGS.metric} {score:.3f}", file=sys.stderr)
    print(min(scores)[2])


if __name__ == "__main__":
    cli.run(main)
