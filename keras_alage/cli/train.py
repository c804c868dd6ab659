"""What `alage train` does once its flags are parsed (its usage and flags: `train_flags`): the
flags become the run's configs here (`specs_from_flags`), and a setting a config refuses is
worded back in the flags' names (`flag_words`)."""

import dataclasses
from typing import Optional, Tuple

import keras
import tensorflow as tf
from absl import app, logging

from keras_alage import cli
from keras_alage.cli import records, train_flags
from keras_alage.evaluation import provenance
from keras_alage.models import attention, weight_import
from keras_alage.models.age_model import ModelConfig
from keras_alage.training import fold_runs, loop, workers
from keras_alage.training.configs import RunSpec, StartConfig
from alage_pipelines.configs import Augmentation, SettingRefused

FLAGS = train_flags.FLAGS

# The train command's flags that define the architecture (`ModelConfig` fields of the same name).
MODEL_FLAGS = ("depth", "ror_levels", "input_size", "age_classes", "local_weight", "max_box_size", "layout")
# Config fields whose flag has another name; every other field's flag is its name.
FLAG_OF_FIELD = {"RunSpec.folds": "fold", "Augmentation.downscale": "downscale_augment",
                 "Augmentation.grayscale": "grayscale_augment", "Augmentation.old_photo": "old_photo_augment"}


def flag_of(field: str) -> str:
    """The flag of a config field ("Class.field")."""
    return FLAG_OF_FIELD.get(field, field.rpartition(".")[2])


def flag_words(refused: SettingRefused) -> str:
    """A config's refusal worded in the train command's flags."""
    return refused.worded(lambda field: "--" + flag_of(field))


def _from_flags(cls, values, **fixed):
    """`cls` with each field read from its flag (`flag_of`); fields without a flag keep their
    default; `fixed` overrides."""
    settings = {}
    for field in dataclasses.fields(cls):
        flag = flag_of(f"{cls.__name__}.{field.name}")
        if field.name in fixed:
            settings[field.name] = fixed[field.name]
        elif flag in values:
            value = values[flag].value
            settings[field.name] = tuple(value) if isinstance(value, list) else value
    return cls(**settings)


def parse_fixed_box(text: Optional[str]):
    """--fixed_box: None, 'whole', or four numbers x,y,w,h."""
    if text is None or text == attention.WHOLE_MAP:
        return text
    try:
        box = tuple(float(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4:
        raise ValueError(f"--fixed_box must be x,y,w,h or {attention.WHOLE_MAP!r}; received {text!r}.")
    return box


def specs_from_flags(values) -> Tuple[RunSpec, loop.TrainConfig]:
    """The one place the train command's flags (absl `FlagValues`) become the run's configs: a
    `RunSpec` (its `ModelConfig`, `StartConfig` and `Augmentation` nested) and a `TrainConfig`,
    every field from its flag. A setting a config refuses is a ValueError in the flags' words."""
    try:
        decay_epochs = tuple(sorted(int(e) for e in values["lr_decay_epochs"].value))  # in any order: one schedule
    except ValueError:
        raise ValueError(f"--lr_decay_epochs must be integers; received {values['lr_decay_epochs'].value}.") from None
    if any(e < 1 for e in decay_epochs):
        raise ValueError(f"--lr_decay_epochs are epochs from 1 on; received {values['lr_decay_epochs'].value}.")
    try:
        spec = _from_flags(RunSpec, values, model=ModelConfig(**{name: values[name].value for name in MODEL_FLAGS}),
                           start=_from_flags(StartConfig, values), augmentation=_from_flags(Augmentation, values),
                           fixed_box=parse_fixed_box(values["fixed_box"].value))
    except SettingRefused as refused:
        raise ValueError(flag_words(refused)) from None
    return spec, _from_flags(loop.TrainConfig, values, lr_decay_epochs=decay_epochs)


def main(argv):
    cli.no_arguments(argv)
    logging.set_verbosity(logging.WARNING)  # TensorFlow's checkpoint chatter; progress is printed
    try:
        spec, config = specs_from_flags(FLAGS)
    except ValueError as error:
        raise app.UsageError(str(error))
    if FLAGS.mixed_precision != "off":
        keras.mixed_precision.set_global_policy(f"mixed_{FLAGS.mixed_precision}")
    strategy = workers.make_strategy(FLAGS.strategy)
    try:
        fold_runs.validate(spec)
        fold_runs.check_settings(spec, config, strategy)
    except SettingRefused as refused:
        raise app.UsageError(flag_words(refused))
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(str(error))
    try:
        fold_runs.run(spec, config, strategy, flags_text=FLAGS.flags_into_string())
    except SettingRefused as refused:
        raise app.UsageError(flag_words(refused))
    except (provenance.RunMismatch, weight_import.CheckpointError) as error:
        raise app.UsageError(str(error))
    except tf.errors.DataLossError as error:  # a record damaged after the build was verified
        raise app.UsageError(records.damaged_build(FLAGS.data_dir, error))
