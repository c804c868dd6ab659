"""What `alage evaluate` does once its flags are parsed (its usage and flags: `evaluate_flags`)."""

import contextlib
import os

import tensorflow as tf
from absl import app

from keras_alage import cli
from keras_alage.cli import evaluate_flags, records
from keras_alage.evaluation import run_folders, scoring
from alage_pipelines import build, files

FLAGS = evaluate_flags.FLAGS


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
        raise app.UsageError(records.damaged_build(FLAGS.data_dir, error))
    print(scoring.markdown_report(results, scoring.aggregate(results), "Evaluation"))
    if output:
        print(f"report: {output}/results.md")
