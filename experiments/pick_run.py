"""Prints the evaluation file with the lowest value of a metric (ties: the first given).

  python experiments/pick_run.py --metric=global.mae runs/a/evaluation.json runs/b/evaluation.json

Used by experiments/release_model.sh to continue the better of two equal-budget starts.
"""

import json
import sys

from absl import app, flags

from keras_alage import cli

flags.DEFINE_string("metric", "combined.mae", "Dotted key of the metric in each JSON file (lower is better).")
FLAGS = flags.FLAGS


def metric_of(path: str, key: str) -> float:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise app.UsageError(f"{path}: {error}")
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise app.UsageError(f"{path}: no {key!r} in it.")
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        keys = f" (its keys: {', '.join(sorted(value))})" if isinstance(value, dict) else ""
        raise app.UsageError(f"{path}: {key} is not a number{keys}.")
    return float(value)


def main(argv):
    if len(argv) < 3:
        raise app.UsageError("Give two or more evaluation JSON files.")
    scores = [(metric_of(path, FLAGS.metric), i, path) for i, path in enumerate(argv[1:])]
    for score, _, path in scores:
        print(f"{path}: {FLAGS.metric} {score:.3f}", file=sys.stderr)
    print(min(scores)[2])


if __name__ == "__main__":
    cli.run(main)
