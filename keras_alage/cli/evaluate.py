"""Evaluates trained models with the paper's protocol: each fold's test side, ten-crop.

  python scripts/evaluate.py --data_dir=data/fgnet --run_dir=runs/fgnet/attention
  python scripts/evaluate.py --data_dir=data/fgnet --fold=fold0 --model=runs/x/fold0/model.keras

Reports per fold and mean +- std across folds, for the global head, the local head and the
combined prediction: MAE, CS@5, per-age-band MAE, epsilon-error where labels carry a
standard deviation (LAP), exact and one-off accuracy for age groups (Adience). Writes
results.json and results.md to --output_dir (default: --run_dir for the run's own build and
ten crops, else a folder of their own in it). A model is only scored on test photos it did not
train on: the run's run.json names its build, and another build's test side is checked
against that build's training side.
"""

import contextlib
import os

import tensorflow as tf
from absl import app, flags

from keras_alage import cli
from keras_alage.evaluation import run_folders, scoring
from alage_pipelines import augment, build, dataset, files

flags.DEFINE_string("data_dir", None, "TFRecord build the models were trained on.")
flags.DEFINE_list("fold", ["all"], "Fold(s) to evaluate, or 'all'.")
flags.DEFINE_string("run_dir", None, "Run of scripts/train.py: <run_dir>/<fold>/model.keras per fold.")
flags.DEFINE_string("model", None, "One .keras model for every requested fold (instead of --run_dir).")
flags.DEFINE_enum("crops", "ten", list(augment.CROPS), "Ten-crop (the paper), the "
                  "centre crop, the centre and its mirror, or the centre shifted 1/32 four ways and all mirrored.")
flags.DEFINE_integer("batch_size", 16, "Images per batch.")
flags.DEFINE_string("output_dir", None, "Where results.json and results.md go; default: --run_dir for its own build "
                    "with ten crops, else <run_dir>/eval-<build>-<hash>-<crops>/ (never another evaluation's report).")
flags.DEFINE_list("group_by", [], "Record attributes to break the MAE down by (UTKFace: gender,race).")
flags.DEFINE_list("local_weights", [], "Also report the combined MAE at these local weights (the paper's lambda; "
                  "0 = global head only), to choose it on validation data.")
flags.DEFINE_enum("group_head", "combined", list(scoring.HEADS), "Head whose MAE --group_by breaks down.")
flags.DEFINE_enum("eval_view", "as_built", list(dataset.EVAL_VIEWS), "Faces as built, or each as its fixed old "
                  "scanned print (a shifted population made from the build, for choices without the test set).")
flags.mark_flags_as_required(["data_dir"])
cli.require_positive("batch_size")
FLAGS = flags.FLAGS


def held_folders(run_dir, output_dir) -> contextlib.ExitStack:
    """Holds the run folder, and an existing --output_dir of its own, for the evaluation's life
    (`files.folder_lock`, as training does): a report is never written under a training that
    holds the folder, nor by two evaluations at once."""
    if run_dir and not os.path.isdir(run_dir):
        raise app.UsageError(f"--run_dir={run_dir} is not a folder.")
    folders = [run_dir] if run_dir else []
    if output_dir and os.path.isdir(output_dir) and not (run_dir and files.overlaps(output_dir, run_dir)):
        folders.append(output_dir)
    stack = contextlib.ExitStack()
    try:
        for folder in folders:
            stack.enter_context(files.folder_lock(folder, "evaluating"))
    except BaseException:
        stack.close()
        raise
    return stack


def main(argv):
    cli.no_arguments(argv)
    if bool(FLAGS.run_dir) == bool(FLAGS.model):
        raise app.UsageError("Give exactly one of --run_dir and --model.")
    with held_folders(FLAGS.run_dir, FLAGS.output_dir):
        evaluate()


def evaluate():
    try:
        folds = len(build.Build.open(FLAGS.data_dir).folds)
    except (ValueError, FileNotFoundError) as error:  # a damaged or empty manifest.json
        raise app.UsageError(str(error))
    if FLAGS.model:
        path_of = lambda fold: FLAGS.model  # noqa: E731
    elif folds > 1:
        path_of = lambda fold: os.path.join(FLAGS.run_dir, fold, "model.keras")  # noqa: E731
    else:
        path_of = lambda fold: os.path.join(FLAGS.run_dir, "model.keras")  # noqa: E731
    try:
        output = FLAGS.output_dir or (run_folders.default_report_dir(FLAGS.run_dir, FLAGS.data_dir, FLAGS.crops,
                                                                    FLAGS.eval_view) if FLAGS.run_dir else None)
        results = run_folders.evaluate_run(FLAGS.data_dir, FLAGS.fold, path_of, FLAGS.crops, FLAGS.batch_size, output,
                                          group_by=FLAGS.group_by, group_head=FLAGS.group_head,
                                          local_weights=[float(w) for w in FLAGS.local_weights],
                                          eval_view=FLAGS.eval_view)
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(str(error))
    except tf.errors.DataLossError as error:  # a record damaged after the build was verified
        raise app.UsageError(cli.damaged_build(FLAGS.data_dir, error))
    print(scoring.markdown_report(results, scoring.aggregate(results), "Evaluation"))
    if output:
        print(f"report: {output}/results.md")


def run() -> None:
    """The command's entry point (`scripts/evaluate.py`, `alage evaluate`)."""
    cli.run(main)


if __name__ == "__main__":
    run()
