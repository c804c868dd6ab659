"""A training run on a TFRecord build: one fold or all folds in turn, each trained, then
evaluated on its test side, with the results aggregated across folds.

The train command turns its flags into a `RunSpec` and a `TrainConfig` (`configs.py`) and calls `run`.
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
from keras_alage.training import loop, run_files, stages, workers
from keras_alage.training.configs import RunSpec
from alage_pipelines import build, dataset, faces, files
from alage_pipelines.configs import SettingRefused


def calibration_batch(spec: RunSpec, files) -> np.ndarray:
    """`spec.start.calibration_images` centre crops of training faces, for batch-norm recalibration."""
    return dataset.centre_crops(files, spec.start.calibration_images, spec.model.input_size)


def _start_weights(model: keras.Model, spec: RunSpec, checkpoint: Optional[str], train_files, log) -> None:
    """Loads the run's one starting point (`spec.start`, `checkpoint`: the fold's) into `model`."""
    start = spec.start
    if checkpoint:
        try:
            report = weight_import.load_initial_weights(model, checkpoint)
        except weight_import.CheckpointError:
            raise
        except ValueError as error:  # another architecture's weights, a file Keras cannot read
            raise weight_import.CheckpointError(f"--init_checkpoint={checkpoint}: {error}") from None
        log(f"initialised from {checkpoint}: {report.summary()}")
    elif start.keras_hub_preset:
        backbone = weight_import.backbone_of(model)
        report = weight_import.load_keras_hub_preset(backbone, start.keras_hub_preset)
        log(f"imported {start.keras_hub_preset}: {report.summary()}")
    elif start.init_dlib_age:
        report = dlib_import.import_dlib_age(
            model, path=start.init_dlib_age, heads=("global_head", "local_head") if start.dlib_heads else ())
        dlib_import.recalibrate_batch_norm(model, calibration_batch(spec, train_files))
        log(f"imported {report.summary()}; batch norms recalibrated on {start.calibration_images} training faces")
    elif start.init_faceapi:
        weights = faceapi_import.import_faceapi_age(weight_import.backbone_of(model), path=start.init_faceapi)
        log(f"imported face-api's backbone from {weights.source}")
    if start.local_head_from_global:
        weight_import.local_head_from_global(model)
        log("local head starts as a copy of the global head")


def _model_builder(spec: RunSpec, fold: str, log, train_files=(), stage: str = "global"):
    checkpoint = spec.start.checkpoint_of(fold)

    def build_model() -> keras.Model:
        model = build_age_model(spec.model)
        _start_weights(model, spec, checkpoint, train_files, log)
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
        raise SettingRefused(f"{data.directory} was built with {data.num_classes} classes but {{0}}="
                             f"{model.age_classes} has {classes}.", "ModelConfig.age_classes")


class SettingsRefused(SettingRefused):
    """A setting the run cannot start with (an architecture it cannot build, a starting checkpoint
    it cannot load), found before anything of the run is recorded: one line for the user."""


def check_architecture(model: ModelConfig) -> None:
    """Refuses, naming the setting, an architecture that cannot be built (before a model is)."""
    if model.layout == "torch":
        try:
            resnet.block_spec(model.depth)
        except ValueError:
            raise SettingsRefused(f"{{0}}={model.depth} is not a ResNet depth this model builds; use one of "
                                  f"{', '.join(map(str, sorted(resnet.RESNET_SPECS)))}.", "ModelConfig.depth") from None
    if model.input_size < 32:
        raise SettingsRefused(f"{{0}}={model.input_size}: the networks need at least 32 px.", "ModelConfig.input_size")


def validate(spec: RunSpec, data: Optional[build.Build] = None) -> List[str]:
    """Checks the build (`data`: the spec's, where already open), its class count, the
    architecture, the requested folds and their starting checkpoints; returns the fold names."""
    check_architecture(spec.model)
    data = data or build.Build.open(spec.data_dir, verify=True)
    _check_classes(data, spec.model)
    folds = data.fold_names(spec.folds)
    checkpoints = [c for c in (spec.start.checkpoint_of(f) for f in folds) if c]
    missing = [c for c in checkpoints if not os.path.exists(c)]
    if missing:
        raise SettingRefused(f"{{0}}: {', '.join(sorted(set(missing)))} does not exist.", "StartConfig.init_checkpoint")
    unknown = [c for c in checkpoints if not (release.is_release(c) or c.endswith((".keras", ".weights.h5")))]
    if unknown:
        raise SettingsRefused(f"{{0}}={unknown[0]} must be a .keras model, a released model's folder or "
                              "a .weights.h5 file.", "StartConfig.init_checkpoint")
    if spec.start.init_dlib_age:
        dlib_import.find_onnx(spec.start.init_dlib_age)
    if spec.start.init_faceapi:
        if spec.model.layout != "faceapi":
            raise SettingRefused("{0} needs {1}=faceapi (face-api's TinyXception).", "StartConfig.init_faceapi",
                                 "ModelConfig.layout")
        faceapi_import.find_model(spec.start.init_faceapi)
    return folds


def check_settings(spec: RunSpec, config: loop.TrainConfig, strategy) -> None:
    """Settings that rule each other out, refused in the configs' words (`SettingRefused`): with
    several workers an epoch is one exact pass; a fixed box stays fixed only when the local head
    alone trains; the teacher and the memory control are for the stages that train the local head."""
    if spec.fixed_box is not None:
        if config.stage != "local_head":
            raise SettingRefused(f"{{0}} needs {{1}}=local_head (stage {config.stage!r} would train the "
                                 "location network away from it).", "RunSpec.fixed_box", "TrainConfig.stage")
        try:  # the box must fit this architecture's map and size bounds
            attention.fix_box(build_age_model(spec.model), spec.fixed_box)
        except ValueError as error:
            raise SettingRefused(f"{{0}}: {error}", "RunSpec.fixed_box") from None
    local_stages = ("attention", "local_head")
    if config.distill_weight < 0:
        raise SettingRefused(f"{{0}} must be 0 or more; received {config.distill_weight}.",
                             "TrainConfig.distill_weight")
    if config.distill_weight and config.stage not in local_stages:
        raise SettingRefused("{0} teaches the local head from the global head: it is for the attention "
                             "and local_head stages.", "TrainConfig.distill_weight")
    if not spec.attention_memory and config.stage not in local_stages:
        raise SettingRefused("{0}=False is for the attention and local_head stages.", "RunSpec.attention_memory")
    if workers.worker_count(strategy) > 1 and config.steps_per_epoch:
        raise SettingRefused("{0}: with several workers each epoch is one exact pass over the "
                             "training side; leave it unset.", "TrainConfig.steps_per_epoch")


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
    strategy = strategy or workers.make_strategy("default")
    if not workers.is_chief(strategy):
        return _run_folds(spec, config, strategy, log, verbose, flags_text)
    with files.folder_lock(config.run_dir, "training"):
        return _run_folds(spec, config, strategy, log, verbose, flags_text)


@dataclasses.dataclass(frozen=True)
class FoldSides:
    """What one fold trains and is evaluated on."""

    train_files: Tuple[str, ...]
    train_counts: Tuple[int, ...]  # records per training file (the manifest's)
    train_records: int  # records of the training parts (the manifest's)
    test_files: Tuple[str, ...]
    test_parts: Tuple[str, ...]


def fold_sides(spec: RunSpec, data: build.Build, fold: str, log) -> FoldSides:
    """The fold's training and test sides; with `spec.inner_validation`, one training part held
    out as the test side (the fold's own test side is not read)."""
    train_parts, test_parts = data.sides(fold)["train"], data.sides(fold)["test"]
    if spec.inner_validation:
        held_out = data.validation_part(fold)
        train_parts, test_parts = [p for p in train_parts if p != held_out], [held_out]
        log(f"fold {fold}: part {held_out} held out for validation; its test side is not read")
    shards = data.part_shards(train_parts)
    sides = FoldSides(tuple(path for path, _ in shards), tuple(records for _, records in shards),
                      data.records(train_parts), tuple(data.part_files(test_parts)), tuple(test_parts))
    if not sides.train_records:
        raise ValueError(f"{spec.data_dir} fold {fold}: its training side holds no record; nothing to train on.")
    return sides


def training_input(spec: RunSpec, config: loop.TrainConfig, strategy, sides: FoldSides, build_id: str):
    """The fold's training data and steps per epoch: with several workers, exact passes split
    over them (`dataset.PlannedEpochs`); else an endless shuffled stream, one pass per epoch
    unless `config.steps_per_epoch` says otherwise."""
    count = workers.worker_count(strategy)
    if count > 1:
        train_data = dataset.PlannedEpochs(sides.train_files, sides.train_counts, config.batch_size,
                                           spec.model.input_size, config.seed, spec.shuffle_buffer,
                                           spec.augmentation, build_id)
        return train_data, train_data.steps(count, strategy.num_replicas_in_sync // count)
    train_input = dataset.DatasetConfig(config.batch_size, spec.model.input_size, training=True,
                                        augmentation=spec.augmentation, shuffle_buffer=spec.shuffle_buffer,
                                        seed=config.seed, repeat=True)
    steps = config.steps_per_epoch or workers.steps_per_epoch(sides.train_records, config.batch_size)
    return dataset.make_dataset(sides.train_files, train_input), steps


def evaluation_input(spec: RunSpec, files_, crops: str):
    return dataset.make_dataset(files_, dataset.DatasetConfig(spec.eval_batch_size, spec.model.input_size,
                                                              crops=crops))


def _trainer(spec: RunSpec, config: loop.TrainConfig, strategy, fold: str, sides: FoldSides, log) -> loop.Trainer:
    try:
        return loop.Trainer(_model_builder(spec, fold, log, sides.train_files, config.stage),
                            spec.model.classes().values, config, strategy)
    except weight_import.CheckpointError:
        raise
    except ValueError as error:  # a setting this model or strategy cannot take: nothing recorded
        raise SettingsRefused(str(error)) from None


def _evaluate_fold(spec: RunSpec, trainer: loop.Trainer, run_dir: str, sides: FoldSides, crop) -> dict:
    """Scores the trained model on the fold's test side; writes evaluation.json (and the face
    crop beside model.keras: export and prediction cut faces alike)."""
    if crop is not None:
        faces.write_crop_spec(run_dir, crop)
    classes = spec.model.classes()
    result = scoring.evaluate_model(trainer.model, evaluation_input(spec, sides.test_files, spec.eval_crops),
                                    classes.values, not classes.is_integer_ages)
    evaluated_on = {"side": "validation" if spec.inner_validation else "test", "parts": list(sides.test_parts)}
    files.write_atomically(os.path.join(run_dir, "evaluation.json"),
                           json.dumps(result | {"evaluated_on": evaluated_on}, indent=1, sort_keys=True))
    return result


def _run_folds(spec: RunSpec, config: loop.TrainConfig, strategy, log, verbose: int,
               flags_text: Optional[str]) -> Dict[str, dict]:
    data = build.Build.open(spec.data_dir, verify=True)
    folds = validate(spec, data)
    check_settings(spec, config, strategy)
    run_dirs = {f: os.path.join(config.run_dir, f) if len(data.folds) > 1 else config.run_dir for f in folds}
    chief = workers.is_chief(strategy)
    identities = {fold: provenance.run_identity(spec, config, fold, spec.start.checkpoint_of(fold), data)
                  for fold in folds} if chief else {}
    for fold in identities:  # every fold checked before anything of the run is written
        provenance.check_run(run_dirs[fold], identities[fold])
    results = {}
    for fold in folds:
        run_dir = run_dirs[fold]
        sides = fold_sides(spec, data, fold, log)
        train_data, steps = training_input(spec, config, strategy, sides, data.manifest_sha256)
        if chief:  # the folder is ours (`run` holds it): what a killed run left goes
            for leftover in run_files.remove_leftovers(run_dir):
                log(f"removed {leftover}, left by a killed save")
        planned = isinstance(train_data, dataset.PlannedEpochs)
        log(f"fold {fold}: {sides.train_records} training records, {steps} steps per epoch"
            f"{' (exact passes split over the workers)' if planned else ''} -> {run_dir}")
        trainer = _trainer(spec, dataclasses.replace(config, run_dir=run_dir, steps_per_epoch=steps), strategy,
                           fold, sides, log)
        if chief:  # the settings are accepted (the model is built and started): recorded now, not before
            provenance.record_run(run_dir, identities[fold])
            if flags_text is not None:
                files.write_atomically(os.path.join(config.run_dir, "flags.txt"), flags_text)
                flags_text = None
        validation = evaluation_input(spec, sides.test_files, "center") if spec.validate else None
        trainer.fit(train_data, validation, verbose=verbose)
        if chief:
            results[fold] = _evaluate_fold(spec, trainer, run_dir, sides, data.crop)
            log(f"fold {fold}: combined MAE {results[fold]['combined']['mae']:.3f}, "
                f"global {results[fold]['global']['mae']:.3f}, local {results[fold]['local']['mae']:.3f}")
    if results and chief:
        side = "held-out validation parts" if spec.inner_validation else "test folds"
        title = f"{data.dataset} {config.stage} stage, {spec.eval_crops} crop, on the {side}"
        scoring.write_report(config.run_dir, results, title)
    return results


def config_from_run(flags_path: str) -> ModelConfig:
    """The architecture a run trained, from the flags.txt that train.py wrote beside it (each
    `ModelConfig` field of one value that the file names)."""
    types = {field.name: type(field.default) for field in dataclasses.fields(ModelConfig)
             if isinstance(field.default, (int, float, str)) and not isinstance(field.default, bool)}
    values = {}
    with open(flags_path, encoding="utf-8") as f:
        for line in f:
            key, _, value = line.strip().lstrip("-").partition("=")
            if key in types:
                values[key] = types[key](value)
    return ModelConfig(**values)
