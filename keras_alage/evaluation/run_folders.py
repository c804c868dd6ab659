"""Evaluating models on builds: one model per fold of a run folder (or a released model) scored on
each fold's test side, after checking that it never trained on those faces; reports that never
overwrite another evaluation's."""

import json
import os
from typing import Dict, Optional, Sequence

import numpy as np

from keras_alage.evaluation import provenance, scoring
from keras_alage.models import age_model, release
from alage_pipelines import build, dataset, files


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
    data = build.Build.open(data_dir, verify=True)
    attributes = {e["path"]: e.get("attributes", {}) for e in data.record_log()} if group_by else {}
    source = {"build": dict(data.identity, data_dir=files.portable_path(data.directory)), "crops": crops, "folds": {}}
    if eval_view != "as_built":  # reports of the faces as built keep their old identity
        source["eval_view"] = eval_view
    if output_dir:
        check_report_target(output_dir, source)
    results = {}
    for fold in data.fold_names(folds):
        path = model_path_of(fold)
        if release.is_release(path):
            checked = "a released model (its training data: model.json)"
        else:
            checked = provenance.check_evaluation(os.path.dirname(path), data, fold)
        source["folds"][fold] = {"model": files.portable_path(path), "checked": checked}
        model = release.load_model(path)
        classes = _classes_of(model, data)
        size = int(model.input_shape[1])
        faces = dataset.make_dataset(data.fold_files(fold, "test"),
                                     dataset.DatasetConfig(batch_size, size, crops=crops, eval_view=eval_view))
        predictions = scoring.predict_dataset(model, faces)
        results[fold] = scoring.score(predictions, classes, grouped=scoring.is_grouped(classes))
        if local_weights:
            results[fold]["local_weight_mae"] = scoring.local_weight_sweep(predictions, classes, local_weights)
            log(f"fold {fold}: combined MAE by local weight {results[fold]['local_weight_mae']}")
        if group_by:
            results[fold]["groups_head"] = group_head
            results[fold]["groups"] = scoring.score_groups(predictions, classes, attributes, group_by,
                                                            group_head)
        log(f"fold {fold}: combined MAE {results[fold]['combined']['mae']:.3f} on {results[fold]['count']} images")
    if output_dir:
        scoring.write_report(output_dir, results, f"{data.dataset}, {crops} crop", source)
    return results


def answer_side(model, data_dir: str, side: str, batch_size: int = 64) -> Dict[str, np.ndarray]:
    """`scoring.predict_dataset` of a model on one side ("train" or "test") of a build's first
    fold, centre crop (e.g. a release's own training faces, for its prior)."""
    data = build.Build.open(data_dir, verify=True)
    faces = dataset.make_dataset(data.first_fold_files(side),
                                 dataset.DatasetConfig(batch_size, int(model.input_shape[1]), crops="center"))
    return scoring.predict_dataset(model, faces)


def predict_fold_run(fold_dir: str, data_dir: str, fold: str, batch_size: int = 64):
    """(model, predictions) of one fold's run on the side it was evaluated on at the end of
    training: its held-out validation part (`inner_validation`) or its test side, centre crop."""
    with open(os.path.join(fold_dir, "evaluation.json"), encoding="utf-8") as handle:
        evaluated_on = json.load(handle).get("evaluated_on", {"side": "test"})
    data = build.Build.open(data_dir)
    if evaluated_on["side"] == "test":
        files_ = data.fold_files(fold, "test")
        provenance.check_evaluation(fold_dir, data, fold)
    else:
        files_ = data.part_files(evaluated_on["parts"])
    model = release.load_model(os.path.join(fold_dir, release.FINAL_MODEL))
    faces = dataset.make_dataset(files_, dataset.DatasetConfig(batch_size, int(model.input_shape[1]), crops="center"))
    return model, scoring.predict_dataset(model, faces)


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
    same_build = (previous.get("build") or {}).get("manifest_sha256") == source["build"]["manifest_sha256"]
    if not same_build or previous.get("crops") != source["crops"] or previous_view != view:
        raise FileExistsError(
            f"{output_dir}/results.json reports another evaluation ({previous.get('build', {}).get('data_dir')}, "
            f"{previous.get('crops')} crop, faces {previous_view}); give another --output_dir."
        )


def default_report_dir(run_dir: str, data_dir: str, crops: str, eval_view: str = "as_built") -> str:
    """The run folder itself for its own build with ten crops (as training reports it), else a
    folder of its own per build, crops and view, so no evaluation overwrites another's report."""
    runs = [d for d in (run_dir, *(os.path.join(run_dir, n) for n in sorted(os.listdir(run_dir)))) if os.path.isdir(d)]
    builds = {r["build"]["manifest_sha256"] for r in map(provenance.read_run, runs) if r}
    identity = build.Build.open(data_dir).identity
    if crops == "ten" and eval_view == "as_built" and builds == {identity["manifest_sha256"]}:
        return run_dir
    name = os.path.basename(os.path.normpath(data_dir))
    view = "" if eval_view == "as_built" else f"-{eval_view}"
    return os.path.join(run_dir, f"eval-{name}-{identity['manifest_sha256'][:8]}-{crops}{view}")


def _classes_of(model, data: build.Build) -> tuple:
    ages = age_model.class_ages_of(model)
    if len(ages) != data.num_classes:
        raise ValueError(f"The model has {len(ages)} classes; the build has {data.num_classes}.")
    return ages
