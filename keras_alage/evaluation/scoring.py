"""The paper's evaluation: ten-crop predictions, metrics per head, folds aggregated.

Each head (global, local and the combined P = (P_g + 0.5 P_l) / 1.5) is scored side by side
with MAE, CS@5, per-age-band MAE, epsilon-error where labels carry a standard deviation
(LAP) and exact / one-off accuracy where classes are age groups (Adience).
"""

import json
import math
import os
from typing import Dict, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from keras_alage.evaluation import metrics
from keras_alage.evaluation.options import HEADS
from alage_pipelines import augment, files

SUMMARY_METRICS = ("mae", "cs5", "epsilon_error", "exact_accuracy", "one_off_accuracy")


def is_grouped(class_ages: Sequence[float]) -> bool:
    """Whether classes are age groups (Adience) rather than consecutive integer ages."""
    return any(b - a != 1 for a, b in zip(class_ages, class_ages[1:]))


def average_over_crops(predict, images) -> Dict[str, tf.Tensor]:
    """The model's probabilities ("probs", "global_probs", "local_probs") and "box" for a batch.

    [batch, crops, H, W, 3] inputs (ten-crop, shift_flip, centre and mirror) run as one batch of
    batch x crops images; the probabilities are averaged over the crops and the box is the
    unmirrored centre crop's.
    [batch, H, W, 3] inputs pass straight through.
    """
    keys = list(HEADS.values())
    if images.shape.rank == 4:
        outputs = predict(images)
        return {key: outputs[key] for key in keys + ["box"]}
    batch, crops = tf.shape(images)[0], images.shape[1]
    outputs = predict(tf.reshape(images, (-1,) + tuple(images.shape[2:])))
    averaged = {
        key: tf.reduce_mean(tf.reshape(outputs[key], (batch, crops, outputs[key].shape[-1])), axis=1)
        for key in keys
    }
    return averaged | {"box": tf.reshape(outputs["box"], (batch, crops, 4))[:, augment.centre_crop_index(crops)]}


def _crop_averaged(predict, images) -> Dict[str, np.ndarray]:
    """Head probabilities and boxes of a batch as numpy, by head name."""
    outputs = average_over_crops(predict, images)
    return {head: outputs[key].numpy() for head, key in HEADS.items()} | {"box": outputs["box"].numpy()}


def predict_dataset(model, dataset) -> Dict[str, np.ndarray]:
    """Head probabilities, boxes and labels of every image of a finite evaluation dataset."""
    predict = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    parts: Dict[str, list] = {}
    for images, labels in dataset:
        found = _crop_averaged(predict, images)
        found |= {k: labels[k].numpy() for k in ("label", "age", "age_std", "path")}
        for key, value in found.items():
            parts.setdefault(key, []).append(value)
    if not parts:
        raise ValueError("The evaluation data is empty.")
    return {key: np.concatenate(values) for key, values in parts.items()}


def head_metrics(probs, true_ages, labels, age_std, class_ages, grouped: bool) -> dict:
    """Metrics of one head's probabilities against the labels."""
    predicted = metrics.expected_age(probs, class_ages)
    result = {
        "mae": metrics.mean_absolute_error(predicted, true_ages),
        "cs5": metrics.cumulative_score(predicted, true_ages, 5.0),
        "bands": metrics.per_band_mae(predicted, true_ages),
    }
    if np.all(np.asarray(age_std) > 0):
        result["epsilon_error"] = metrics.epsilon_error(predicted, true_ages, age_std)
    if grouped:
        chosen = np.argmax(probs, axis=-1)
        result["exact_accuracy"] = metrics.exact_accuracy(chosen, labels)
        result["one_off_accuracy"] = metrics.one_off_accuracy(chosen, labels)
    return result


def score(predictions: Mapping[str, np.ndarray], class_ages: Sequence[float], grouped: bool = False) -> dict:
    """{"count": n, "global": {...}, "local": {...}, "combined": {...}}."""
    result = {"count": int(len(predictions["label"]))}
    for head in HEADS:
        result[head] = head_metrics(
            predictions[head], predictions["age"], predictions["label"], predictions["age_std"], class_ages, grouped
        )
    return result


def local_weight_sweep(predictions: Mapping[str, np.ndarray], class_ages: Sequence[float],
                       weights: Sequence[float]) -> Dict[str, float]:
    """MAE of the combined prediction P = (P_global + w P_local) / (1 + w) for each weight w, from
    one pass's head probabilities: the paper's lambda, chosen on validation data (0: global only)."""
    result = {}
    for weight in weights:
        probs = metrics.combine_heads(predictions["global"], predictions["local"], weight)
        result[f"{weight:g}"] = metrics.mean_absolute_error(metrics.expected_age(probs, class_ages), predictions["age"])
    return result


def evaluate_model(model, dataset, class_ages, grouped: bool = False) -> dict:
    return score(predict_dataset(model, dataset), class_ages, grouped)


def score_groups(predictions: Mapping[str, np.ndarray], class_ages: Sequence[float],
                 attributes_by_path: Mapping[str, Mapping[str, str]], keys: Sequence[str],
                 head: str = "combined") -> dict:
    """One head's MAE and CS@5 per value of each attribute (e.g. gender, race):
    {key: {value: {"mae", "cs5", "count"}}}; images without the attribute count as "unknown"."""
    predicted = metrics.expected_age(predictions[head], class_ages)
    true = np.asarray(predictions["age"], dtype=np.float64)
    paths = [p.decode() if isinstance(p, bytes) else str(p) for p in predictions["path"]]
    missing = [p for p in paths if p not in attributes_by_path]
    if missing:
        raise ValueError(f"{len(missing)} evaluated images are not in the build's record log, e.g. {missing[0]}.")
    result = {}
    for key in keys:
        values = np.array([attributes_by_path[p].get(key, "unknown") for p in paths])
        result[key] = {}
        for value in sorted(set(values)):
            mask = values == value
            result[key][value] = {
                "mae": metrics.mean_absolute_error(predicted[mask], true[mask]),
                "cs5": metrics.cumulative_score(predicted[mask], true[mask], 5.0),
                "count": int(mask.sum()),
            }
    return result


def constant_predictor(train_ages: Sequence[float], test_ages: Sequence[float]) -> dict:
    """The floor every model must beat: predict the training set's mean age for everyone."""
    true = np.asarray(test_ages, dtype=np.float64)
    if not len(train_ages) or not true.size:
        raise ValueError("The mean-age predictor needs training and test ages.")
    predicted = np.full_like(true, float(np.mean(train_ages)))
    return {
        "mae": metrics.mean_absolute_error(predicted, true),
        "cs5": metrics.cumulative_score(predicted, true, 5.0),
        "bands": metrics.per_band_mae(predicted, true),
        "count": int(true.size),
    }


def pool_cells(cells: Sequence[Mapping[str, float]]) -> dict:
    """Count-weighted mean of per-fold cells such as {"mae", "cs5", "count"} (NaN when empty)."""
    count = sum(c["count"] for c in cells)
    keys = [k for k in cells[0] if k != "count"] if cells else []
    pooled = {
        k: float(sum(c[k] * c["count"] for c in cells if c["count"]) / count) if count else float("nan")
        for k in keys
    }
    return pooled | {"count": count}


def aggregate(per_fold: Mapping[str, dict]) -> dict:
    """Mean and standard deviation (population, over folds) of each head's summary metrics,
    and per-band MAE pooled over folds weighted by image counts."""
    result = {"folds": len(per_fold), "count": sum(r["count"] for r in per_fold.values())}
    for head in HEADS:
        summary = {}
        for name in SUMMARY_METRICS:
            values = [r[head][name] for r in per_fold.values() if name in r[head]]
            if values:
                summary[name] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
        bands = list(next(iter(per_fold.values()))[head]["bands"])
        summary["bands"] = {band: pool_cells([r[head]["bands"][band] for r in per_fold.values()]) for band in bands}
        result[head] = summary
    groups = [r["groups"] for r in per_fold.values() if "groups" in r]
    if groups:
        result["groups_head"] = next(r["groups_head"] for r in per_fold.values() if "groups" in r)
        result["groups"] = {
            key: {value: pool_cells([g[key][value] for g in groups if value in g[key]])
                  for value in sorted({v for g in groups for v in g[key]})}
            for key in groups[0]
        }
    return result


def _cell(value) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def markdown_report(per_fold: Mapping[str, dict], combined: dict, title: str = "Evaluation") -> str:
    """Per-fold and mean +- std tables, heads side by side, then per-band MAE."""
    names = [n for n in SUMMARY_METRICS if n in combined["combined"]]
    lines = [f"# {title}", "", f"{combined['count']} test images in {combined['folds']} fold(s).", ""]
    header = "| fold | n | " + " | ".join(f"{head} {name}" for name in names for head in HEADS) + " |"
    lines += [header, "|" + "---|" * (2 + len(names) * len(HEADS))]
    for fold, result in per_fold.items():
        cells = [_cell(result[head].get(name)) for name in names for head in HEADS]
        lines.append(f"| {fold} | {result['count']} | " + " | ".join(cells) + " |")
    cells = [
        f"{combined[head][name]['mean']:.3f} ± {combined[head][name]['std']:.3f}" for name in names for head in HEADS
    ]
    lines.append(f"| **mean ± std** | {combined['count']} | " + " | ".join(cells) + " |")
    bands = list(combined["combined"]["bands"])
    lines += ["", "MAE per age band (all folds pooled):", "", "| head | " + " | ".join(bands) + " |",
              "|" + "---|" * (1 + len(bands))]
    for head in HEADS:
        cells = [f"{_cell(combined[head]['bands'][b]['mae'])} (n={combined[head]['bands'][b]['count']})" for b in bands]
        lines.append(f"| {head} | " + " | ".join(cells) + " |")
    for key, values in combined.get("groups", {}).items():
        lines += ["", f"{combined['groups_head'].capitalize()} head per {key} (all folds pooled):", "", "| " + key + " | n | MAE | CS@5 |",
                  "|---|---|---|---|"]
        lines += [f"| {v} | {c['count']} | {_cell(c['mae'])} | {_cell(c['cs5'])} |" for v, c in values.items()]
    return "\n".join(lines) + "\n"


def write_report(directory: str, per_fold: Mapping[str, dict], title: str = "Evaluation",
                 source: Optional[dict] = None) -> dict:
    """Writes results.json and results.md atomically; returns the aggregate. `source` (the
    build, crops and models evaluated) is kept in results.json."""
    combined = aggregate(per_fold)
    report = {"folds": per_fold, "aggregate": combined} | ({"source": source} if source else {})
    for name, text in (
        ("results.json", json.dumps(report, indent=1, sort_keys=True)),
        ("results.md", markdown_report(per_fold, combined, title)),
    ):
        files.write_atomically(os.path.join(directory, name), text)
    return combined


def compare_predictors(true_ages: Mapping[str, float], subjects: Mapping[str, str],
                       predictions: Mapping[str, Mapping[str, Optional[float]]], reference: str) -> dict:
    """Several predictors on the same photos: per predictor, the photos it answered, MAE and
    CS@5 on the photos *every* predictor answered, with subject-bootstrap 95% intervals, and
    the paired difference of each predictor's absolute error to `reference`'s.

    Args:
      true_ages, subjects: per photo path.
      predictions: predictor name -> {path: age, or None where it found no face}.
    """
    paths = sorted(true_ages)
    common = [p for p in paths if all(predictions[n].get(p) is not None for n in predictions)]
    if not common:
        raise ValueError("no photo was answered by every predictor.")
    truth = np.array([true_ages[p] for p in common])
    people = np.array([subjects[p] for p in common])
    errors = {n: np.abs(np.array([predictions[n][p] for p in common]) - truth) for n in predictions}
    table = {"photos": len(paths), "common": len(common), "predictors": {}}
    for name in predictions:
        mean, low, high = metrics.subject_bootstrap(errors[name], people)
        row = {
            "answered": sum(predictions[name].get(p) is not None for p in paths),
            "mae": mean, "mae_low": low, "mae_high": high,
            "cs5": float(np.mean(errors[name] <= 5.0)),
            "bands": metrics.per_band_mae(np.array([predictions[name][p] for p in common]), truth),
        }
        if name != reference:
            diff, dlow, dhigh = metrics.subject_bootstrap(errors[name] - errors[reference], people)
            row |= {"diff_to_reference": diff, "diff_low": dlow, "diff_high": dhigh}
        table["predictors"][name] = row
    table["reference"] = reference
    return table


def predictors_markdown(table: dict, title: str) -> str:
    """The comparison as a Markdown table: MAE [95% interval], CS@5, answered photos, paired difference."""
    lines = [f"## {title}", "",
             f"{table['common']} of {table['photos']} photos answered by every predictor; intervals: subject "
             f"bootstrap, 95%; difference: absolute error minus {table['reference']}'s on the same photos.", "",
             "| predictor | answered | MAE [95% CI] | CS@5 | difference [95% CI] |", "|---|---|---|---|---|"]
    for name, row in table["predictors"].items():
        diff = (f"{row['diff_to_reference']:+.2f} [{row['diff_low']:+.2f}, {row['diff_high']:+.2f}]"
                if "diff_to_reference" in row else "reference")
        lines.append(f"| {name} | {row['answered']} | {row['mae']:.2f} [{row['mae_low']:.2f}, {row['mae_high']:.2f}] "
                     f"| {row['cs5']:.3f} | {diff} |")
    names = list(table["predictors"])
    bands = list(table["predictors"][names[0]]["bands"])
    lines += ["", "MAE per age band (images):", "", "| band | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    for band in bands:
        cells = []
        for name in names:
            cell = table["predictors"][name]["bands"][band]
            cells.append(f"{cell['mae']:.2f} ({cell['count']})")
        lines.append(f"| {band} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
