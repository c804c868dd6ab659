"""How the AL model's release settings are chosen on validation views: the local weight (one view, several
views alike, or nested over a second population's subject folds) and the run among variants.

Reads the reports of `scripts/evaluate.py --local_weights`; the product never imports it."""

import json
import os
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from alage_pipelines import files
from alage_pipelines.options import CROPS


def local_weight_maes(report_path: str) -> Dict[str, float]:
    """Local weight -> combined MAE over a report's folds (pooled by record count), from
    `scripts/evaluate.py --local_weights`."""
    with open(report_path, encoding="utf-8") as f:
        return pooled_weight_maes(json.load(f)["folds"])


def pooled_weight_maes(folds: Mapping[str, dict]) -> Dict[str, float]:
    """Local weight -> combined MAE pooled by count over folds {name: {"count", "local_weight_mae"}}."""
    totals: dict = {}
    for result in folds.values():
        if "local_weight_mae" not in result:
            raise ValueError("no local-weight sweep in it; run scripts/evaluate.py with --local_weights.")
        for weight, mae in result["local_weight_mae"].items():
            errors, count = totals.get(weight, (0.0, 0))
            totals[weight] = (errors + mae * result["count"], count + result["count"])
    if not totals:
        raise ValueError("it holds no fold.")
    return {weight: errors / count for weight, (errors, count) in totals.items()}


def mean_over_views(report_paths: Sequence[str]) -> Dict[str, float]:
    """Local weight -> the mean of its MAE over several reports (views of the validation faces,
    e.g. as built and as old photos), each report weighing alike; weights all of them swept."""
    if not report_paths:
        raise ValueError("no validation report given.")
    return mean_of_views([local_weight_maes(path) for path in report_paths], ", ".join(report_paths))


def mean_of_views(maes: Sequence[Mapping[str, float]], names: str = "the views") -> Dict[str, float]:
    """Local weight -> the mean of its MAE over the views' sweeps, each alike; weights all swept."""
    common = set(maes[0]).intersection(*maes[1:])
    if not common:
        raise ValueError(f"{names} sweep no local weight in common.")
    return {weight: sum(m[weight] for m in maes) / len(maes) for weight in common}


def lowest_weight(means: Mapping[str, float]) -> float:
    """The weight of the lowest mean MAE (ties: the smaller weight)."""
    return float(min(means, key=lambda w: (means[w], float(w))))


def best_local_weight(*report_paths: str) -> float:
    """The local weight with the lowest `mean_over_views` of the reports (ties: the smaller)."""
    return lowest_weight(mean_over_views(report_paths))


def nested_local_weight(view_paths: Sequence[str], population_folds: Mapping[str, dict]) -> Dict[str, float]:
    """For each fold of a second population: the local weight chosen as `best_local_weight` would
    choose it over the fixed views and that population's *other* folds (one more view, pooled), so
    the fold's MAE at its weight is an honest estimate of choosing on that population.

    Args:
      view_paths: reports of the fixed views (e.g. the training set's held-out faces).
      population_folds: {fold: {"count", "local_weight_mae"}} of the second population (subject folds).
    """
    if len(population_folds) < 2:
        raise ValueError("a nested choice needs at least two folds of the second population.")
    views = [local_weight_maes(path) for path in view_paths]
    chosen = {}
    for held in population_folds:
        others = pooled_weight_maes({f: r for f, r in population_folds.items() if f != held})
        chosen[held] = lowest_weight(mean_of_views(views + [others], "the views and the population's folds"))
    return chosen


def choose_run(reports_of: Mapping[str, Sequence[str]]) -> Tuple[str, float, Dict[str, Dict[str, float]]]:
    """The run and local weight of the lowest `mean_over_views` over all runs (ties: the first
    run given, the smaller weight), and the table run -> weight -> mean MAE it was read from."""
    if not reports_of:
        raise ValueError("no run given.")
    table = {run: mean_over_views(paths) for run, paths in reports_of.items()}
    order = {run: i for i, run in enumerate(reports_of)}
    run, weight = min(((r, w) for r, means in table.items() for w in means),
                      key=lambda rw: (table[rw[0]][rw[1]], order[rw[0]], float(rw[1])))
    return run, float(weight), table


def release_choice(runs: Sequence[str], views: Sequence[str], crops: Sequence[str],
                   output: Optional[str] = None) -> Tuple[Tuple[str, float, str], List[str]]:
    """The run, local weight and evaluation crops to release: the lowest mean combined MAE over
    `views` (report folders in each run: the centre crop's; crops C in <view>_C), and the table's
    lines it was chosen from (markdown), also written to `output` + .md and .json. A crop list
    outside `CROPS` or a view not yet evaluated is a ValueError naming it."""
    if not runs:
        raise ValueError("Give one or more run folders.")
    unknown = [c for c in crops if c not in CROPS]
    if unknown:
        raise ValueError(f"--crops: {unknown[0]!r} is not one of {CROPS}.")
    reports_of = {}
    for run in runs:
        for crop in crops:
            folders = [view if crop == "center" else f"{view}_{crop}" for view in views]
            reports_of[(run, crop)] = [os.path.join(run, folder, "results.json") for folder in folders]
            missing = [path for path in reports_of[(run, crop)] if not os.path.exists(path)]
            if missing:
                raise ValueError(f"{missing[0]} not found; evaluate that view first (scripts/evaluate.py).")
    (run, crop), weight, table = choose_run(reports_of)
    per_view = {r: {v: local_weight_maes(p) for v, p in zip(views, paths)} for r, paths in reports_of.items()}
    weights = sorted(table[(run, crop)], key=float)
    lines = [f"# Release choice: mean combined MAE over {', '.join(views)}", "",
             "| run | crops | " + " | ".join(f"w={w}" for w in weights) + " |", "|---" * (len(weights) + 2) + "|"]
    for (r, c), means in table.items():
        cells = []
        for w in weights:
            cell = f"{means[w]:.3f} ({' / '.join(f'{per_view[(r, c)][v][w]:.3f}' for v in views)})"
            cells.append(f"**{cell}**" if (r, c, w) == (run, crop, f"{weight:g}") else cell)
        lines.append(f"| {os.path.basename(r.rstrip('/'))} | {c} | " + " | ".join(cells) + " |")
    lines += ["", f"Chosen: {run}, {crop} crops, local weight {weight:g} (cells: mean (one per view))."]
    if output:
        files.write_atomically(output + ".md", "\n".join(lines) + "\n")
        files.write_atomically(output + ".json", json.dumps(
            {"views": list(views), "chosen": {"run": run, "crops": crop, "local_weight": weight},
             "mean": {f"{r} {c}": m for (r, c), m in table.items()},
             "per_view": {f"{r} {c}": v for (r, c), v in per_view.items()}}, indent=1, sort_keys=True))
    return (run, weight, crop), lines
