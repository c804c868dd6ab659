"""What `alage train` does once its flags are parsed (its usage and flags: `train_flags`)."""

import keras
import tensorflow as tf
from absl import app, logging

from keras_alage import cli
from keras_alage.cli import records, train_flags
from keras_alage.evaluation import provenance
from keras_alage.models import weight_import
from keras_alage.training import fold_runs, loop

FLAGS = train_flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    logging.set_verbosity(logging.WARNING)  # TensorFlow's checkpoint chatter; progress is printed
    try:
        spec, config = fold_runs.specs_from_flags(FLAGS)
    except ValueError as error:
        raise app.UsageError(str(error))
    if FLAGS.mixed_precision != "off":
        keras.mixed_precision.set_global_policy(f"mixed_{FLAGS.mixed_precision}")
    strategy = loop.make_strategy(FLAGS.strategy)
    try:
        fold_runs.validate(spec)
        fold_runs.check_settings(spec, config, strategy)
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(str(error))
    try:
        fold_runs.run(spec, config, strategy, flags_text=FLAGS.flags_into_string())
    except (provenance.RunMismatch, weight_import.CheckpointError, fold_runs.SettingsRefused) as error:
        raise app.UsageError(str(error))
    except tf.errors.DataLossError as error:  # a record damaged after the build was verified
        raise app.UsageError(records.damaged_build(FLAGS.data_dir, error))
