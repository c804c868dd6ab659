"""Chooses the run, evaluation crops and local weight to release: the lowest mean combined MAE over
several views of the validation faces (e.g. as built and as old photos), from each run's
evaluation reports.

  python experiments/choose_release.py --views=held_out_as_built,held_out_old_photo --crops=center,center_flip \
      --output=docs/results/releases/release_v3_choices runs/release_v3/base runs/release_v3/old_photo ...

A run's reports for the centre crop lie in the --views folders; for other crops C, in <view>_C.
Prints "<run folder> <local weight> <crops>" (for experiments/release_v3_model.sh) and writes the
table it chose from to <output>.md and <output>.json.
"""

import sys

from absl import app, flags

from keras_alage import cli
from keras_alage.studies.releases import al_choice

flags.DEFINE_list("views", ["held_out_as_built", "held_out_old_photo"],
                  "Report folders inside each run (each with results.json of scripts/evaluate.py --local_weights).")
flags.DEFINE_list("crops", ["center"], "Evaluation crops to choose among (each run needs its reports for each).")
flags.DEFINE_string("output", None, "Write the table to this path + .md and .json.")
FLAGS = flags.FLAGS


def main(argv):
    try:
        (run, weight, crops), table = al_choice.release_choice(argv[1:], FLAGS.views, FLAGS.crops, FLAGS.output)
    except (OSError, ValueError, KeyError) as error:
        raise app.UsageError(str(error))
    print("\n".join(table), file=sys.stderr)
    print(f"{run} {weight:g} {crops}")


if __name__ == "__main__":
    cli.run(main)
