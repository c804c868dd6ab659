"""Chooses the run, evaluation crops and local weight to release: the lowest mean combined MAE over
several views of the validation faces (e.g. as built and as old photos), from each run's
evaluation reports.

  python experiments/choose_release.py --views=held_out_as_built,held_out_old_photo --crops=center,center_flip \
      --output=docs/results/releases/release_v3_choices runs/release_v3/base runs/release_v3/old_photo ...

A run's reports for the centre crop lie in the --views folders; for other crops C, in <view>_C.
Prints "<run folder> <local weight> <crops>" (for experiments/release_v3_model.sh) and writes the
table it chose from to <output>.md and <output>.json.
"""

import json
import os
import sys

from absl import app, flags

from keras_alage import cli
from keras_alage.models import release
from keras_alage.studies import release_choice
from alage_pipelines import files

flags.DEFINE_list("views", ["held_out_as_built", "held_out_old_photo"],
                  "Report folders inside each run (each with results.json of scripts/evaluate.py --local_weights).")
flags.DEFINE_list("crops", ["center"], "Evaluation crops to choose among (each run needs its reports for each).")
flags.DEFINE_string("output", None, "Write the table to this path + .md and .json.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) < 2:
        raise app.UsageError("Give one or more run folders.")

    unknown = [c for c in FLAGS.crops if c not in release.CROPS]
    if unknown:
        raise app.UsageError(f"--crops: {unknown[0]!r} is not one of {release.CROPS}.")
    reports_of = {}
    for run in argv[1:]:
        for crops in FLAGS.crops:
            folders = [view if crops == "center" else f"{view}_{crops}" for view in FLAGS.views]
            reports_of[(run, crops)] = [os.path.join(run, folder, "results.json") for folder in folders]
            missing = [path for path in reports_of[(run, crops)] if not os.path.exists(path)]
            if missing:
                raise app.UsageError(f"{missing[0]} not found; evaluate that view first (scripts/evaluate.py).")
    try:
        (run, crops), weight, table = release_choice.choose_run(reports_of)
        per_view = {r: {v: release_choice.local_weight_maes(p) for v, p in zip(FLAGS.views, paths)}
                    for r, paths in reports_of.items()}
    except (OSError, ValueError, KeyError) as error:
        raise app.UsageError(str(error))
    weights = sorted(table[(run, crops)], key=float)
    lines = [f"# Release choice: mean combined MAE over {', '.join(FLAGS.views)}", "",
             "| run | crops | " + " | ".join(f"w={w}" for w in weights) + " |", "|---" * (len(weights) + 2) + "|"]
    for (r, c), means in table.items():
        cells = []
        for w in weights:
            views = " / ".join(f"{per_view[(r, c)][v][w]:.3f}" for v in FLAGS.views)
            cell = f"{means[w]:.3f} ({views})"
            cells.append(f"**{cell}**" if (r, c, w) == (run, crops, f"{weight:g}") else cell)
        lines.append(f"| {os.path.basename(r.rstrip('/'))} | {c} | " + " | ".join(cells) + " |")
    lines += ["", f"Chosen: {run}, {crops} crops, local weight {weight:g} (cells: mean (one per view))."]
    if FLAGS.output:
        files.write_atomically(FLAGS.output + ".md", "\n".join(lines) + "\n")
        files.write_atomically(FLAGS.output + ".json", json.dumps(
            {"views": FLAGS.views, "chosen": {"run": run, "crops": crops, "local_weight": weight},
             "mean": {f"{r} {c}": m for (r, c), m in table.items()},
             "per_view": {f"{r} {c}": v for (r, c), v in per_view.items()}}, indent=1, sort_keys=True))
    print("\n".join(lines), file=sys.stderr)
    print(f"{run} {weight:g} {crops}")


if __name__ == "__main__":
    cli.run(main)
