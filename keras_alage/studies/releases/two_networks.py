"""The two-network release (v4): the released AL model (v3.1) and face-api's network in one folder, combined by the
mean fixed in advance (`serving.ensemble`), with a calibrated 90 % interval.

What is decided, and on what (nothing here reads a test face):
  - face-api's cut: its own pipeline's rectangle inside the release's crop (`faceapi_cut`),
    measured without labels;
  - the combination: the plain mean, fixed before any face was scored;
  - the interval: split-conformal per predicted-age band (`evaluation.intervals`), calibrated on
    the validation faces of both populations at hand (UTKFace's held-out part and FG-NET);
    whether and how much it widens with the two networks' disagreement (`SCALE_FLOORS`) is
    chosen by how well coverage survives a change of population: calibrated on one population,
    measured on the other, the candidate whose worse direction covers most (ties: narrower).
Errors and coverage are reported per age band and sex with bootstrap intervals. Both populations
are face-api's training data, so its numbers on them are optimistic (the card says so).
"""

import json
import os
import shutil
import zlib
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from keras_alage.evaluation import intervals
from keras_alage.models import faceapi_import, release, xception
from keras_alage.serving import ensemble, photos
from alage_pipelines import build, files, tfrecords

AGE_BANDS = (10, 20, 30, 40, 50, 60, 70)  # true-age bands for the error tables: 0-9, ..., 70+
ANSWERS = ("age", "al_age", "faceapi_age", "global_age", "local_age")
SCALE_FLOORS = (None, 1.0, 2.0, 4.0, 8.0)  # None: the plain banded table


def faces_of(build_dir: str, parts=None):
    """(encoded crops, ages, paths) of a build's parts (None: all of them), in file order."""
    data = build.Build.open(build_dir, verify=True)
    parts = sorted(data.manifest["parts"]) if parts is None else parts
    encoded, ages, paths = [], [], []
    for example in tf.data.TFRecordDataset(data.part_files(parts)).map(tfrecords.parse_example):
        encoded.append(example["image"].numpy())
        ages.append(float(example["age"]))
        paths.append(example["path"].numpy().decode())
    return encoded, np.array(ages), paths


def answers(server, encoded: Sequence[bytes], batch: int = 32) -> Dict[str, np.ndarray]:
    """Every output of `server.serve_encoded` for the crops, in order."""
    collected: Dict[str, List[np.ndarray]] = {}
    for start in range(0, len(encoded), batch):
        outputs = server.serve_encoded(tf.constant(list(encoded[start : start + batch]), tf.string))
        for key in ANSWERS:
            collected.setdefault(key, []).append(np.asarray(outputs[key]))
    return {key: np.concatenate(values) for key, values in collected.items()}


def utkface_sex(path: str) -> str:
    """UTKFace's AGE_GENDER_RACE name: gender 0 male, 1 female."""
    parts = os.path.basename(path).split("_")
    return {"0": "male", "1": "female"}.get(parts[1] if len(parts) > 2 else "", "unknown")


def age_band(age: float) -> str:
    low = max([0] + [edge for edge in AGE_BANDS if age >= edge])
    return f"{low}+" if low == AGE_BANDS[-1] else f"{low}-{low + 9}"


def bootstrap_mae(errors: np.ndarray, samples: int = 1000, seed: int = 0) -> List[float]:
    """95 % percentile interval of the mean absolute error over faces."""
    if len(errors) == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = np.abs(errors)[rng.integers(0, len(errors), (samples, len(errors)))].mean(axis=1)
    return [float(v) for v in np.percentile(means, [2.5, 97.5])]


def error_table(predicted: Dict[str, np.ndarray], truth: np.ndarray, groups: Dict[str, Sequence[str]]) -> dict:
    """MAE [95 % interval] and mean signed error of each answer, overall and per group value."""
    table = {}
    for key, ages in predicted.items():
        errors = ages - truth
        rows = {"all": np.ones(len(truth), bool)}
        for name, values in groups.items():
            values = np.asarray(values, dtype=object)
            rows.update({f"{name}={v}": values == v for v in sorted(set(values.tolist()))})
        table[key] = {row: {"faces": int(mask.sum()), "mae": float(np.abs(errors[mask]).mean()),
                            "mae_95": bootstrap_mae(errors[mask]), "bias": float(errors[mask].mean())}
                      for row, mask in rows.items() if mask.any()}
    return table


def assemble(v3_dir: str, output_dir: str, cut: dict, faceapi_source=None) -> str:
    """The v4 folder without intervals: v3.1's files (its recorded prior left out: the prior shift
    moves one network's distribution, not the combined answer) plus face-api's network."""
    staging = output_dir.rstrip("/") + ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(v3_dir, staging)
    description = release.read_description(staging)
    description.pop("prior", None)
    description["provenance"]["name"] = "v4"
    release.write_description(staging, description)
    net = xception.build_faceapi_age_net()
    faceapi_import.import_faceapi_age(net, path=faceapi_source)
    source = f"{faceapi_import.PACKAGE}@{faceapi_import.VERSION} (MIT), model/age_gender_model.bin"
    release.save_faceapi(staging, net, faceapi_import.FaceApiCut(**cut).to_json(), ensemble.Combination().to_json(),
                         source)
    return staging


def calibrate_and_report(staging: str, populations: Dict[str, dict]) -> dict:
    """Answers of each population's validation faces, the interval table fitted on all of them,
    cross-population coverage, and error tables. `populations`: name -> {"build", "parts"}."""
    server = photos.serving_module(release.open_model_path(staging))
    answered = {}
    for name, where in populations.items():
        encoded, truth, paths = faces_of(where["build"], where["parts"])
        answered[name] = {"truth": truth, "paths": paths, **answers(server, encoded)}
    report = {"populations": {n: {"faces": len(a["truth"]), **populations[n]} for n, a in answered.items()},
              "candidates": {}}
    for floor in SCALE_FLOORS:
        report["candidates"][str(floor)] = cross_population(answered, floor)
    floor = choose_scale_floor(report["candidates"])
    report["chosen_scale_floor"] = floor
    report["split_halves"] = split_halves(answered, floor)
    final = fit_table(answered, list(answered), floor,
                      " + ".join(f"{n} ({len(a['truth'])} faces)" for n, a in answered.items()))
    report["intervals"] = final.to_json()
    report["errors"] = {}
    for name, a in answered.items():
        groups = {"band": [age_band(t) for t in a["truth"]]}
        if name.startswith("utkface"):
            groups["sex"] = [utkface_sex(p) for p in a["paths"]]
            groups["sex_band"] = [f"{s} {b}" for s, b in zip(groups["sex"], groups["band"])]
        predicted = {key: a[key] for key in ANSWERS if np.isfinite(a[key]).all()}
        report["errors"][name] = error_table(predicted, a["truth"], groups)
        low, high = intervals.apply(final, a["age"], ensemble.spread(a["al_age"], a["faceapi_age"]))
        report["errors"][name]["coverage_of_final_table (in-sample)"] = intervals.coverage(low, high, a["truth"])
    return report


def fit_table(answered: dict, names, floor, measured_on: str = "", masks=None) -> intervals.IntervalTable:
    """The interval table fitted on the named populations' faces (where `masks` keeps them)."""
    def joined(key):
        return np.concatenate([answered[n][key][masks[n]] if masks else answered[n][key] for n in names])

    return intervals.fit(joined("age"), joined("truth"), measured_on=measured_on, scale_floor=floor,
                         spread=ensemble.spread(joined("al_age"), joined("faceapi_age")))


def covered(table, answered: dict, name: str, mask=None) -> dict:
    a = {k: (v[mask] if mask is not None else v) for k, v in answered[name].items() if k != "paths"}
    low, high = intervals.apply(table, a["age"], ensemble.spread(a["al_age"], a["faceapi_age"]))
    return intervals.coverage(low, high, a["truth"], [age_band(t) for t in a["truth"]])


def cross_population(answered: dict, floor) -> dict:
    """Coverage on each population of the table calibrated on each other one."""
    return {f"{fit_on}->{cover}": covered(fit_table(answered, [fit_on], floor), answered, cover)
            for fit_on in answered for cover in answered if cover != fit_on}


def choose_scale_floor(candidates: Dict[str, dict]):
    """The candidate whose worse cross-population coverage is highest; ties (to 0.005): the one
    with the narrower mean width."""
    def worst(name):
        return min(c["all"]["coverage"] for c in candidates[name].values())

    def width(name):
        return float(np.mean([c["all"]["mean_width"] for c in candidates[name].values()]))

    best = max(worst(n) for n in candidates)
    chosen = min((n for n in candidates if worst(n) >= best - 0.005), key=width)
    return None if chosen == "None" else float(chosen)


def split_halves(answered: dict, floor) -> dict:
    """Coverage on each population's other half of a table fitted on one half of every population."""
    split = _halves(answered)
    result = {}
    for half in (0, 1):
        keep = {n: split[n] == half for n in answered}
        table = fit_table(answered, list(answered), floor, masks=keep)
        for n in answered:
            result[f"half{half}->{n} (other half)"] = covered(table, answered, n, ~keep[n])
    return result


def _halves(answered) -> Dict[str, np.ndarray]:
    """A fixed half split of each population's faces (by a hash of the path, so a person's photos
    in FG-NET, whose names start with the subject, stay together)."""
    def key(path: str) -> str:
        name = os.path.basename(path)
        return name[:3] if name[:3].isdigit() and "A" in name[3:5] else name

    return {n: np.array([zlib.crc32(key(p).encode()) % 2 for p in a["paths"]]) for n, a in answered.items()}


def finish(staging: str, output_dir: str, report: dict) -> None:
    """Records the final interval table and moves the folder into place."""
    release.record_intervals(staging, report["intervals"])
    release.replace_folder(staging, output_dir)


def markdown(report: dict, command: str) -> str:
    """The report's tables: errors per band and sex, and the interval's coverage."""
    lines = ["# Release v4 on its validation faces", "",
             "Both populations are face-api's training data (its README: 80 % of UTKFace and FG-NET), so its "
             "column and the combined one are optimistic here; the AL model never trained on these faces.", ""]
    for name, table in report["errors"].items():
        rows = list(table["age"])  # all, band=, sex=, sex_band=
        lines += [f"## {name} ({report['populations'][name]['faces']} faces): MAE [95 % bootstrap], bias", "",
                  "| faces | n | v4 (mean) | AL model (v3.1) | face-api | v4 bias |", "|---|---|---|---|---|---|"]
        for row in rows:
            cells = [f"{table[k][row]['mae']:.2f} [{table[k][row]['mae_95'][0]:.2f}, {table[k][row]['mae_95'][1]:.2f}]"
                     for k in ("age", "al_age", "faceapi_age")]
            lines.append(f"| {row} | {table['age'][row]['faces']} | " + " | ".join(cells)
                         + f" | {table['age'][row]['bias']:+.2f} |")
        lines.append("")
    lines += ["## The 90 % interval", "",
              f"Scale floor chosen: {report['chosen_scale_floor']} (offsets in units of floor + |AL age - face-api age|).",
              "", "| calibrated on -> covering | scale floor | coverage [95 %] | mean width |", "|---|---|---|---|"]
    for floor, directions in report["candidates"].items():
        for direction, cover in directions.items():
            c = cover["all"]
            lines.append(f"| {direction} | {floor} | {c['coverage']:.3f} [{c['coverage_95'][0]:.3f}, "
                         f"{c['coverage_95'][1]:.3f}] | {c['mean_width']:.1f} |")
    lines += ["", "| one half of both populations -> the other half | coverage [95 %] | mean width |", "|---|---|---|"]
    for direction, cover in report["split_halves"].items():
        c = cover["all"]
        lines.append(f"| {direction} | {c['coverage']:.3f} [{c['coverage_95'][0]:.3f}, {c['coverage_95'][1]:.3f}] | "
                     f"{c['mean_width']:.1f} |")
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)


def build_release(v3_dir: str, cut_path: str, utkface: str, fgnet: str, faceapi_source, output: str,
                  report_path: str, command: str) -> dict:
    """Builds the release into `output` (replaced only when complete) from v3.1's folder and
    face-api's measured cut (`scripts/measure_faceapi_cut.py`'s JSON), its interval calibrated on
    UTKFace's held-out part and all of FG-NET; writes the report (JSON, markdown beside it) and
    returns it."""
    with open(cut_path, encoding="utf-8") as f:
        cut = json.load(f)["cut"]
    staging = assemble(v3_dir, output, cut, faceapi_source)
    report = calibrate_and_report(staging, {
        "utkface_held_out": {"build": utkface, "parts": ["test"]},
        "fgnet": {"build": fgnet, "parts": None},
    })
    report["cut"] = cut
    finish(staging, output, report)
    report["command"] = command
    files.write_atomically(report_path, json.dumps(report, indent=1) + "\n")
    files.write_atomically(os.path.splitext(report_path)[0] + ".md", markdown(report, command))
    return report


def summary(report: dict, output: str, report_path: str) -> str:
    """What the build prints: each population's errors, the interval's coverage, what was written."""
    lines = [f"{name}: MAE " + ", ".join(f"{k} {v['all']['mae']:.2f}" for k, v in table.items() if "all" in v
                                         and "mae" in v["all"]) for name, table in report["errors"].items()]
    chosen = report["candidates"][str(report["chosen_scale_floor"])]
    lines.append(f"interval scale floor {report['chosen_scale_floor']} (chosen on cross-population coverage): "
                 + ", ".join(f"{k} {v['all']['coverage']:.3f}" for k, v in chosen.items()))
    lines.append(f"wrote {output} and {report_path}")
    return "\n".join(lines)
