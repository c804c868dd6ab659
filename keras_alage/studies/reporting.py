"""Experiment reports: staged runs side by side with the mean-age floor, and the attention
boxes on real faces (a picture grid and statistics that show whether the boxes moved).

A run here is the pair of folders a staged experiment writes: the global stage
(`<run>/global/<fold>/...`) and the attention stage (`<run>/attention/<fold>/...`), each
with the `results.json` of `scoring.write_report`.
"""

import json
import os
from typing import Dict, List, Mapping, Optional, Sequence

import cv2
import numpy as np

from keras_alage.evaluation import metrics, scoring
from keras_alage.models import release
from keras_alage.models.age_model import class_ages_of
from alage_pipelines import augment, build, dataset, files

BOX_KEYS = ("x", "y", "w", "h")


def read_results(run_dir: str) -> dict:
    """`results.json` of a finished multi-fold run: {"folds": {...}, "aggregate": {...}}."""
    path = os.path.join(run_dir, "results.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: the run in {run_dir} has not finished all its folds.")
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def mean_predictor_results(data_dir: str, folds: Sequence[str]) -> Dict[str, dict]:
    """Per fold, the training side's mean age predicted for every test image."""
    data = build.Build.open(data_dir)
    return {
        fold: scoring.constant_predictor(data.fold_ages(fold, "train"), data.fold_ages(fold, "test"))
        for fold in folds
    }


def _mean_std(values: Sequence[float]) -> str:
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}"


def comparison_rows(data_dir: str, runs: Mapping[str, str]) -> List[dict]:
    """One row per (model, head) with per-fold MAE and CS@5, mean-age predictor first.

    Args:
      runs: name -> folder holding `global/` and `attention/` stage runs.
    """
    folds = list(read_results(os.path.join(next(iter(runs.values())), "attention"))["folds"])
    floor = mean_predictor_results(data_dir, folds)
    rows = [{"model": "mean-age predictor", "head": "-", "folds": floor}]
    for name, run_dir in runs.items():
        stage_global = read_results(os.path.join(run_dir, "global"))["folds"]
        stage_attention = read_results(os.path.join(run_dir, "attention"))["folds"]
        if list(stage_global) != folds or list(stage_attention) != folds:
            raise ValueError(f"{run_dir}: its stages were run on other folds than {folds}.")
        rows.append({"model": name, "head": "global (global stage)",
                     "folds": {f: stage_global[f]["global"] for f in folds}})
        for head in ("global", "local", "combined"):
            rows.append({"model": name, "head": f"{head} (attention stage)",
                         "folds": {f: stage_attention[f][head] for f in folds}})
    return rows


def staged_runs_markdown(rows: Sequence[dict]) -> str:
    """Per-fold MAE / CS@5 tables, mean ± std over folds, and per-age-band MAE pooled."""
    folds = list(rows[0]["folds"])
    lines = []
    for metric, title in (("mae", "MAE (years)"), ("cs5", "CS@5")):
        lines += [f"**{title}**, ten-crop, per fold and mean ± std over the folds:", "",
                  "| model | head | " + " | ".join(folds) + " | mean ± std |",
                  "|" + "---|" * (3 + len(folds))]
        for row in rows:
            values = [row["folds"][f][metric] for f in folds]
            lines.append(f"| {row['model']} | {row['head']} | " + " | ".join(f"{v:.2f}" for v in values)
                         + f" | {_mean_std(values)} |")
        lines.append("")
    bands = list(rows[0]["folds"][folds[0]]["bands"])
    lines += ["**MAE per age band** (all folds pooled; n = test images in the band):", "",
              "| model | head | " + " | ".join(bands) + " |", "|" + "---|" * (2 + len(bands))]
    for row in rows:
        pooled = [scoring.pool_cells([row["folds"][f]["bands"][b] for f in folds]) for b in bands]
        lines.append(f"| {row['model']} | {row['head']} | " + " | ".join(
            f"{c['mae']:.2f} (n={c['count']})" if c["count"] else "-" for c in pooled) + " |")
    return "\n".join(lines) + "\n"


# --- attention boxes -------------------------------------------------------------------------


def predict_boxes(model, dataset, limit: int) -> dict:
    """The first `limit` images of a centre-crop dataset as uint8 RGB, with the model's
    attention boxes, combined-head ages and the true ages."""
    classes = class_ages_of(model)
    found: Dict[str, list] = {"images": [], "box": [], "age": [], "predicted": []}
    for images, labels in dataset:
        outputs = model(images, training=False)
        pixels = (augment.denormalize(images).numpy() * 255.0 + 0.5).astype(np.uint8)
        found["images"].append(pixels)
        found["box"].append(np.asarray(outputs["box"]))
        found["age"].append(labels["age"].numpy())
        found["predicted"].append(metrics.expected_age(np.asarray(outputs["probs"]), classes))
        if sum(len(a) for a in found["age"]) >= limit:
            break
    if not found["age"]:
        raise ValueError("No images to draw boxes on.")
    return {key: np.concatenate(parts)[:limit] for key, parts in found.items()}


def box_statistics(boxes) -> dict:
    """Mean and spread over images of each box coordinate (normalised to the input)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    return {key: {"mean": float(boxes[:, i].mean()), "std": float(boxes[:, i].std())}
            for i, key in enumerate(BOX_KEYS)}


def box_movement(boxes) -> dict:
    """How much the box moves between faces, relative to its size: the spread (std over faces) of
    its centre over its mean width (height), and of its width (height) over their mean. Near 0:
    the same region for every face, i.e. a fixed crop."""
    b = np.asarray(boxes, dtype=np.float64)
    centre_x, centre_y = b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 3] / 2
    return {
        "centre_x_std_over_width": float(centre_x.std() / b[:, 2].mean()),
        "centre_y_std_over_height": float(centre_y.std() / b[:, 3].mean()),
        "width_std_over_mean": float(b[:, 2].std() / b[:, 2].mean()),
        "height_std_over_mean": float(b[:, 3].std() / b[:, 3].mean()),
        "mean_box": [float(v) for v in b.mean(axis=0)],
        "faces": int(len(b)),
    }


def translation_response(model, encoded_faces: Sequence[bytes], input_size: int, shift: int = 4) -> dict:
    """Whether the box follows the face: each face is cut with the centre window moved by -shift,
    0 and +shift pixels, horizontally and then vertically, so the face moves by +shift, 0 and -shift
    pixels in the input. Returns, per axis, the least-squares slope of the box centre's movement
    over the face's (both as fractions of the input) over all faces: 1 follows the face, 0 stays.
    """
    resized = [augment.resize_shorter(augment.to_float(augment.decode(encoded)), augment.eval_resize_size(input_size))
               for encoded in encoded_faces]

    def centres(dx: int, dy: int):
        views = [augment.normalize(augment.shifted_center_crop(image, input_size, dx, dy)) for image in resized]
        box = np.asarray(model(np.stack(views), training=False)["box"], np.float64)
        return box[:, 0] + box[:, 2] / 2, box[:, 1] + box[:, 3] / 2

    still = centres(0, 0)
    face = np.repeat([shift / input_size, -shift / input_size], len(resized))  # windows at -shift, +shift
    slopes = {}
    for index, axis in enumerate(("x", "y")):
        moved = np.concatenate([centres(*((o, 0) if axis == "x" else (0, o)))[index] - still[index]
                                for o in (-shift, shift)])
        slopes[axis] = float(np.dot(face, moved) / np.dot(face, face))
    return {"slope_x": slopes["x"], "slope_y": slopes["y"], "shift_pixels": shift, "faces": len(encoded_faces)}


def box_iou(first, second) -> np.ndarray:
    """Intersection over union of paired (x, y, w, h) boxes."""
    a, b = np.asarray(first, np.float64), np.asarray(second, np.float64)
    left, top = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    right = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    bottom = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return inter / np.maximum(union, 1e-12)


def box_markdown(title: str, before, after, image_link: str) -> str:
    """The boxes before and after the attention stage: statistics, IoU, and the grid image."""
    stats = {"before": box_statistics(before), "after": box_statistics(after)}
    iou = box_iou(before, after)
    lines = [f"**Attention boxes**, {title} (centre crop, {len(iou)} faces; x, y, w, h as fractions of the "
             "input; mean ± std over faces):", "", "| box | x | y | w | h |", "|---|---|---|---|---|"]
    for key, label in (("before", "before the attention stage"), ("after", "after it")):
        lines.append(f"| {label} | " + " | ".join(f"{stats[key][k]['mean']:.3f} ± {stats[key][k]['std']:.3f}"
                                                  for k in BOX_KEYS) + " |")
    lines += ["", f"IoU of each face's box before and after: mean {np.mean(iou):.3f}, min {np.min(iou):.3f}.", "",
              f"![attention boxes]({image_link})", "",
              "Red: the attention box after the attention stage; grey: before it. "
              "Captions: true age -> combined prediction."]
    return "\n".join(lines) + "\n"


def box_grid(images, boxes, captions: Sequence[str], columns: int = 8, scale: int = 2,
             before=None) -> np.ndarray:
    """A BGR picture grid of face crops (uint8 [n, H, W, 3] RGB) with each box drawn:
    red the attention box, and, when `before` is given, grey the box before training."""
    images = np.asarray(images)
    count, height, width = images.shape[:3]
    if not count or len(boxes) != count or len(captions) != count:
        raise ValueError("box_grid needs as many boxes and captions as images, and at least one image.")
    size = (width * scale, height * scale)
    rows = -(-count // columns)
    grid = np.full((rows * size[1], columns * size[0], 3), 255, np.uint8)

    def corners(box):
        x, y, w, h = (float(v) for v in box)
        return (int(round(x * size[0])), int(round(y * size[1]))), (
            int(round((x + w) * size[0])) - 1, int(round((y + h) * size[1])) - 1)

    for i in range(count):
        tile = cv2.resize(cv2.cvtColor(images[i], cv2.COLOR_RGB2BGR), size, interpolation=cv2.INTER_CUBIC)
        if before is not None:
            cv2.rectangle(tile, *corners(before[i]), (160, 160, 160), 1)
        cv2.rectangle(tile, *corners(boxes[i]), (0, 0, 255), 2)
        cv2.putText(tile, captions[i], (4, size[1] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, (0, 0, 0), 3)
        cv2.putText(tile, captions[i], (4, size[1] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, (255, 255, 255), 1)
        row, column = divmod(i, columns)
        grid[row * size[1]:(row + 1) * size[1], column * size[0]:(column + 1) * size[0]] = tile
    return grid


GRID_FORMATS = (".png", ".jpg", ".jpeg")


def experiment_report(data_dir: str, runs: Mapping[str, str], output: str, grid: Optional[str] = None,
                      grid_fold: str = "fold0", grid_images: int = 32, grid_columns: int = 8) -> str:
    """A staged experiment's report (`experiments/report_experiment.py`): the runs (name -> folder
    holding `global/` and `attention/` stage runs over the same folds) side by side with the
    mean-age floor, per fold and per age band, written to `output` (markdown) and returned; with
    `grid`, an image of `grid_images` test faces of `grid_fold` from the first run with their
    attention boxes after the attention stage (red) and before it (grey)."""
    extension = os.path.splitext(grid or "")[1].lower()
    if grid and extension not in GRID_FORMATS:
        raise ValueError(f"--grid must end in .png, .jpg or .jpeg; received {grid!r}.")
    rows = comparison_rows(data_dir, runs)
    dataset_name = build.read_build_manifest(data_dir)["dataset"]
    text = (f"# {dataset_name}: {', '.join(runs)}\n\nWritten by `experiments/report_experiment.py` from the runs' "
            f"results.json files ({', '.join(runs.values())}).\n\n" + staged_runs_markdown(rows))
    if grid:
        name, run_dir = next(iter(runs.items()))
        models = {stage: release.load_model(os.path.join(run_dir, stage, grid_fold, "model.keras"))
                  for stage in ("global", "attention")}
        size = int(models["attention"].input_shape[1])
        test_files = build.Build.open(data_dir).fold_files(grid_fold, "test")
        found = {stage: predict_boxes(model, dataset.make_dataset(test_files, dataset.DatasetConfig(32, size, crops="center")),
                                      grid_images)
                 for stage, model in models.items()}
        after, before = found["attention"], found["global"]
        captions = [f"{a:.0f} -> {p:.1f}" for a, p in zip(after["age"], after["predicted"])]
        image = box_grid(after["images"], after["box"], captions, grid_columns, before=before["box"])
        ok, encoded = cv2.imencode(extension, image, [cv2.IMWRITE_JPEG_QUALITY, 85] if extension != ".png" else [])
        if not ok:
            raise RuntimeError(f"Could not encode the grid as {extension}.")
        files.write_atomically(grid, encoded.tobytes())
        link = os.path.relpath(grid, os.path.dirname(os.path.abspath(output)))
        text += "\n" + box_markdown(f"{name}, {grid_fold} test faces", before["box"], after["box"], link)
    files.write_atomically(output, text)
    return text


def metric_of(path: str, key: str) -> float:
    """The number at the dotted `key` of a JSON file; a ValueError naming the file where it is
    missing or not a number."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: {error}")
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ValueError(f"{path}: no {key!r} in it.")
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        keys = f" (its keys: {', '.join(sorted(value))})" if isinstance(value, dict) else ""
        raise ValueError(f"{path}: {key} is not a number{keys}.")
    return float(value)


def metrics_of(paths: Sequence[str], key: str) -> List[tuple]:
    """(value, position, path) of each file's `key`, in the order given: `min` of it is the lowest,
    ties going to the first given."""
    return [(metric_of(path, key), i, path) for i, path in enumerate(paths)]
