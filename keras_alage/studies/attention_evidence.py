"""What the attention branch adds: variants trained alike, scored on the same test faces.

A variant is a list of runs (one per training seed), each a list of per-fold run folders. Each
fold's model is scored on its test side (centre crop); per face, the absolute error of each head
is averaged over the seeds, and intervals resample FG-NET's people (`metrics.subject_bootstrap`).
The box study measures how much the box moves between faces relative to its size
(`reporting.box_movement`) and whether it follows a face moved in the crop
(`reporting.translation_response`). experiments/attention_evidence.sh runs it all.
"""

import glob
import json
import os
from typing import Dict, List, Mapping, Sequence

import numpy as np
import tensorflow as tf

from keras_alage.evaluation import metrics, provenance, run_folders, scoring
from keras_alage.models import age_model, release
from keras_alage.studies import reporting
from alage_pipelines import build, dataset, files, tfrecords

HEAD_NAMES = ("global", "local", "combined")


def mean_box(fold_dirs: Sequence[str], data_dir: str) -> np.ndarray:
    """The mean (x, y, w, h) on the input over the faces each fold's run was evaluated on."""
    boxes = [run_folders.predict_fold_run(d, data_dir, os.path.basename(d))[1]["box"] for d in fold_dirs]
    return np.concatenate(boxes).mean(axis=0)


def _test_faces(data_dir: str, fold: str, limit: int) -> List[bytes]:
    records = tf.data.TFRecordDataset(build.Build.open(data_dir).fold_files(fold, "test")).take(limit)
    return [tfrecords.parse_example(r)["image"].numpy() for r in records]


def _fold_errors(predictions, classes) -> Dict[str, np.ndarray]:
    true = np.asarray(predictions["age"], np.float64)
    return {head: np.abs(metrics.expected_age(predictions[head], classes) - true) for head in HEAD_NAMES}


def score_variant(runs: Sequence[Sequence[str]], data_dir: str, translation_faces: int) -> dict:
    """Per-face errors (seed-averaged), per-fold and per-seed MAE per head, and the box study
    (first seed) of one variant."""
    errors: Dict[str, Dict[str, List[float]]] = {head: {} for head in HEAD_NAMES}
    fold_of: Dict[str, str] = {}
    per_seed: Dict[str, List[float]] = {head: [] for head in HEAD_NAMES}
    boxes, translation, trained = [], [], None
    for seed_index, fold_dirs in enumerate(runs):
        seed_errors = {head: [] for head in HEAD_NAMES}
        for fold_dir in fold_dirs:
            fold = os.path.basename(fold_dir)
            model, predictions = run_folders.predict_fold_run(fold_dir, data_dir, fold)
            trained = age_model.trained_heads(model)
            fold_errors = _fold_errors(predictions, age_model.class_ages_of(model))
            paths = [p.decode() for p in predictions["path"]]
            for head in HEAD_NAMES:
                seed_errors[head].append(fold_errors[head])
                for path, error in zip(paths, fold_errors[head]):
                    errors[head].setdefault(path, []).append(float(error))
            fold_of.update({p: fold for p in paths})
            if seed_index == 0:
                boxes.append(predictions["box"])
                if translation_faces:
                    faces = _test_faces(data_dir, fold, translation_faces)
                    translation.append(reporting.translation_response(model, faces, int(model.input_shape[1])))
        for head in HEAD_NAMES:
            per_seed[head].append(float(np.concatenate(seed_errors[head]).mean()))
    counts = {len(v) for head in HEAD_NAMES for v in errors[head].values()}
    if counts != {len(runs)}:
        raise ValueError(f"The runs of a variant scored different faces ({sorted(counts)} scores per face).")
    result = {
        "trained_heads": list(trained),
        "seeds": len(runs),
        "errors": {head: {p: float(np.mean(v)) for p, v in errors[head].items()} for head in HEAD_NAMES},
        "fold_of": fold_of,
        "per_seed_mae": per_seed,
        "boxes": reporting.box_movement(np.concatenate(boxes)),
    }
    if translation:
        weights = np.array([t["faces"] for t in translation], np.float64)
        result["translation"] = {
            "slope_x": float(np.average([t["slope_x"] for t in translation], weights=weights)),
            "slope_y": float(np.average([t["slope_y"] for t in translation], weights=weights)),
            "shift_pixels": translation[0]["shift_pixels"], "faces": int(weights.sum()),
        }
    return result


def compare_variants(variants: Mapping[str, Sequence[Sequence[str]]], data_dir: str, reference: str,
                     translation_faces: int = 64, grid_faces: int = 24, grid_path: str = None,
                     grid_variant: str = "d") -> dict:
    """The comparison table of the variants against `reference` (see the module docstring); the
    box grid draws `grid_variant`'s first run, fold0."""
    subjects = {e["path"]: e["subject"] for e in build.read_record_log(data_dir) if e["status"] == "written"}
    scored = {name: score_variant(runs, data_dir, translation_faces) for name, runs in variants.items()}
    paths = sorted(scored[reference]["errors"]["combined"])
    for name, result in scored.items():
        if sorted(result["errors"]["combined"]) != paths:
            raise ValueError(f"Variant {name} was scored on other faces than {reference}.")
    people = np.array([subjects[p] for p in paths])
    folds = sorted(set(scored[reference]["fold_of"].values()))
    fold_index = np.array([scored[reference]["fold_of"][p] for p in paths])
    summary = {"build": files.portable_path(data_dir), "reference": reference, "faces": len(paths),
               "people": int(len(set(people))), "folds": folds, "variants": {}}
    base = np.array([scored[reference]["errors"]["combined"][p] for p in paths])
    for name, result in scored.items():
        row = {"trained_heads": result["trained_heads"], "seeds": result["seeds"], "heads": {},
               "boxes": result["boxes"]}
        if "translation" in result:
            row["translation"] = result["translation"]
        for head in HEAD_NAMES:
            err = np.array([result["errors"][head][p] for p in paths])
            mean, low, high = metrics.subject_bootstrap(err, people)
            per_fold = {f: float(err[fold_index == f].mean()) for f in folds}
            row["heads"][head] = {"per_fold": per_fold, "mean_over_folds": float(np.mean(list(per_fold.values()))),
                                  "mae": mean, "mae_low": low, "mae_high": high,
                                  "per_seed_mae": result["per_seed_mae"][head]}
        if name != reference:
            err = np.array([result["errors"]["combined"][p] for p in paths])
            diff, low, high = metrics.subject_bootstrap(err - base, people)
            row["combined_minus_reference"] = {
                "per_fold": {f: float((err - base)[fold_index == f].mean()) for f in folds},
                "mean": diff, "low": low, "high": high}
        summary["variants"][name] = row
    if grid_path and grid_variant in variants:
        _box_grid(variants[grid_variant][0][0], data_dir, grid_faces, grid_path)
        summary["box_grid"] = os.path.basename(grid_path)
        summary["box_grid_variant"] = grid_variant
    return summary


def _box_grid(fold_dir: str, data_dir: str, faces: int, path: str) -> None:
    """The attention boxes of a fold's test faces, in the input's frame: red after the attention
    stage, grey those of the model it started from."""

    fold = os.path.basename(fold_dir)
    model = release.load_model(os.path.join(fold_dir, "model.keras"))
    size = int(model.input_shape[1])
    data = dataset.make_dataset(build.Build.open(data_dir).fold_files(fold, "test"),
                                dataset.DatasetConfig(64, size, crops="center"))
    after = reporting.predict_boxes(model, data, faces)
    start = (provenance.read_run(fold_dir) or {}).get("start", {}).get("init_checkpoint")
    before = reporting.predict_boxes(release.load_model(start), data, faces)["box"] if start else None
    captions = [f"{a:.0f}->{p:.0f}" for a, p in zip(after["age"], after["predicted"])]
    import cv2

    grid = reporting.box_grid(after["images"], after["box"], captions, 8, before=before)
    ok, encoded = cv2.imencode(".jpg", grid, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise ValueError(f"Could not encode the box grid for {path}.")
    files.write_atomically(path, encoded.tobytes())


def fold_dirs(run_dir: str, data_dir: str) -> List[str]:
    """The fold folders of a run, named by its build's folds (fold0..4, or subject001.. for
    leave-one-person-out), in the build's order; only those that exist."""
    return [os.path.join(run_dir, fold) for fold in build.Build.open(data_dir).folds
            if os.path.isdir(os.path.join(run_dir, fold))]


def validation_levers(validation_dir: str, data_dir: str, variants: Sequence[str] = ("d", "c")) -> List[dict]:
    """Each validation setting of the variants that learn a box: its validation MAE (mean over
    folds) and how much its box moves between faces (first fold's validation part)."""
    rows = []
    for variant in variants:
        for setting in sorted(glob.glob(os.path.join(validation_dir, variant, "*", "results.json"))):
            run_dir = os.path.dirname(setting)
            with open(setting, encoding="utf-8") as handle:
                aggregate = json.load(handle)["aggregate"]
            fold_dir = fold_dirs(run_dir, data_dir)[0]
            _, predictions = run_folders.predict_fold_run(fold_dir, data_dir, os.path.basename(fold_dir))
            rows.append({"variant": variant, "setting": os.path.basename(run_dir),
                         "validation_mae": aggregate["combined"]["mae"]["mean"],
                         "validation_local_mae": aggregate["local"]["mae"]["mean"],
                         "boxes": reporting.box_movement(predictions["box"])})
    return rows


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


MAX_FOLD_COLUMNS = 10  # more folds (leave-one-person-out): per-fold values in the JSON only


LOCAL_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)


def local_weight_on_validation(run_dir: str, data_dir: str, weights: Sequence[float] = LOCAL_WEIGHTS) -> dict:
    """The paper's lambda on a validation run: the combined MAE for each local weight, pooled over
    the faces of every fold's held-out part (0: the global head alone)."""

    errors = {f"{w:g}": [] for w in weights}
    for fold_dir in fold_dirs(run_dir, data_dir):
        model, predictions = run_folders.predict_fold_run(fold_dir, data_dir, os.path.basename(fold_dir))
        count = len(predictions["age"])
        for key, mae in scoring.local_weight_sweep(predictions, age_model.class_ages_of(model), weights).items():
            errors[key].append((mae, count))
    if not errors[f"{weights[0]:g}"]:
        raise ValueError(f"{run_dir} holds no fold folder.")
    return {key: float(sum(m * n for m, n in values) / sum(n for _, n in values)) for key, values in errors.items()}


def summary_markdown(summary: dict) -> str:
    """The readable tables of a `compare_variants` summary."""
    folds = summary["folds"] if len(summary["folds"]) <= MAX_FOLD_COLUMNS else []
    lines = [f"# What the attention branch adds (FG-NET, {len(summary['folds'])} folds, {summary['faces']} faces of "
             f"{summary['people']} people)", "",
             f"Validation chose: {summary.get('validation_chose') or '-'}", "",
             "Test MAE per fold (errors averaged over the seeds), the mean over folds, and the pooled MAE "
             "with its subject-bootstrap 95% interval:", "",
             _row(["variant", "head", *folds, "mean over folds", "pooled [95% CI]", "per seed"]),
             _row(["---"] * (len(folds) + 5))]
    for name, row in summary["variants"].items():
        for head in HEAD_NAMES:
            cell = row["heads"][head]
            trained = "" if head == "combined" or head in row["trained_heads"] else " (not trained here)"
            lines.append(_row([name, head + trained, *(f"{cell['per_fold'][f]:.2f}" for f in folds),
                               f"{cell['mean_over_folds']:.2f}",
                               f"{cell['mae']:.2f} [{cell['mae_low']:.2f}, {cell['mae_high']:.2f}]",
                               ", ".join(f"{v:.2f}" for v in cell["per_seed_mae"])]))
    lines += ["", f"Combined head minus {summary['reference']}'s, paired on the same faces (negative: better "
              f"than {summary['reference']}):", "",
              _row(["variant", *folds, "pooled [95% CI]"]), _row(["---"] * (len(folds) + 2))]
    for name, row in summary["variants"].items():
        if "combined_minus_reference" in row:
            d = row["combined_minus_reference"]
            lines.append(_row([name, *(f"{d['per_fold'][f]:+.2f}" for f in folds),
                               f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]"]))
    lines += ["", "The box on the test faces (first seed; fractions of the input): spread of its centre over "
              "its mean size between faces, and the slope of its centre's movement over the face's when "
              "the face moves in the crop (1: follows the face, 0: stays put):", "",
              "| variant | mean box (x, y, w, h) | centre x std / w | centre y std / h | w std / mean "
              "| follows x | follows y |", "|---|---|---|---|---|---|---|"]
    for name, row in summary["variants"].items():
        b, t = row["boxes"], row.get("translation", {})
        lines.append(f"| {name} | " + ", ".join(f"{v:.3f}" for v in b["mean_box"])
                     + f" | {b['centre_x_std_over_width']:.4f} | {b['centre_y_std_over_height']:.4f} "
                     f"| {b['width_std_over_mean']:.4f} | {t.get('slope_x', float('nan')):.3f} "
                     f"| {t.get('slope_y', float('nan')):.3f} |")
    if summary.get("levers"):
        lines += ["", "Levers on the box, on the validation parts (settings: box bound, epochs, learning rate; "
                  "box spread on fold0's validation part):", "",
                  "| variant | setting | validation MAE combined | local | centre x std / w | centre y std / h "
                  "| mean w |", "|---|---|---|---|---|---|---|"]
        for row in summary["levers"]:
            b = row["boxes"]
            lines.append(f"| {row['variant']} | {row['setting']} | {row['validation_mae']:.3f} "
                         f"| {row['validation_local_mae']:.3f} | {b['centre_x_std_over_width']:.4f} "
                         f"| {b['centre_y_std_over_height']:.4f} | {b['mean_box'][2]:.3f} |")
    for name, sweep in summary.get("local_weight_on_validation", {}).items():
        lines += ["", f"The local weight (lambda in P = P_global + lambda P_local) on {name}'s validation parts: "
                  "combined MAE pooled over their faces:", "", _row(["lambda", *sweep]), _row(["---"] * (len(sweep) + 1)),
                  _row(["MAE", *(f"{v:.3f}" for v in sweep.values())])]
    if summary.get("box_grid"):
        name = summary.get("box_grid_variant", "d")
        lines += ["", f"![attention boxes of {name}, fold0 test faces]({summary['box_grid']})", "",
                  f"Red: {name}'s box after training; grey: the box of the model it started from, both in the "
                  "input's frame (the region the crop samples). Captions: true age -> combined prediction."]
    return "\n".join(lines) + "\n"


def write_summary(summary: dict, output: str) -> None:
    """`output`.json (machine-readable) and `output`.md (the tables), each written atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    files.write_atomically(output + ".json", json.dumps(summary, indent=1, sort_keys=True))
    files.write_atomically(output + ".md", summary_markdown(summary))
