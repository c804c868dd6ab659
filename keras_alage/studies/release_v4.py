"""Release v4: the released AL model (v3.1) and face-api's network in one folder, combined by the
mean fixed in advance (`serving.ensemble`), with a calibrated 90 % interval.

What is decided, and on what (nothing here reads a test face):
  - face-api's cut: its own pipeline's rectangle inside the release's crop (`faceapi_cut`),
    measured without labels;
  - the combination: the plain mean, fixed before any face was scored;
  - the interval: split-conformal per predicted-age band (`evaluation.intervals`), calibrated on
    the validation faces of both populations at hand (UTKFace's held-out part and FG-NET), the
    rule fixed in advance; how much coverage survives a change of population is measured by
    calibrating on one and covering the other.
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
from pipelines import build, files, tfrecords

AGE_BANDS = (10, 20, 30, 40, 50, 60, 70)  # true-age bands for the error tables: 0-9, ..., 70+
ANSWERS = ("age", "al_age", "faceapi_age", "global_age", "local_age")


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
    files.write_atomically(os.path.join(staging, release.CONFIG_FILE), json.dumps(description, indent=1) + "\n")
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
              "cross_population": {}}
    for calibrate_on in answered:
        table = intervals.fit(answered[calibrate_on]["age"], answered[calibrate_on]["truth"], measured_on=calibrate_on)
        for cover in answered:
            if cover == calibrate_on:
                continue
            low, high = intervals.apply(table, answered[cover]["age"])
            bands = [age_band(a) for a in answered[cover]["truth"]]
            report["cross_population"][f"{calibrate_on}->{cover}"] = intervals.coverage(
                low, high, answered[cover]["truth"], bands)
    split = _halves(answered)
    halves = {}
    for half in (0, 1):
        fit_on = {n: split[n] == half for n in answered}
        table = intervals.fit(np.concatenate([answered[n]["age"][fit_on[n]] for n in answered]),
                              np.concatenate([answered[n]["truth"][fit_on[n]] for n in answered]))
        for n in answered:
            low, high = intervals.apply(table, answered[n]["age"][~fit_on[n]])
            halves[f"half{half}->{n} (other half)"] = intervals.coverage(low, high, answered[n]["truth"][~fit_on[n]])
    report["split_halves"] = halves
    final = intervals.fit(np.concatenate([a["age"] for a in answered.values()]),
                          np.concatenate([a["truth"] for a in answered.values()]),
                          measured_on=" + ".join(f"{n} ({len(a['truth'])} faces)" for n, a in answered.items()))
    report["intervals"] = final.to_json()
    report["errors"] = {}
    for name, a in answered.items():
        groups = {"band": [age_band(t) for t in a["truth"]]}
        if name.startswith("utkface"):
            groups["sex"] = [utkface_sex(p) for p in a["paths"]]
            groups["sex_band"] = [f"{s} {b}" for s, b in zip(groups["sex"], groups["band"])]
        predicted = {key: a[key] for key in ANSWERS if np.isfinite(a[key]).all()}
        report["errors"][name] = error_table(predicted, a["truth"], groups)
        low, high = intervals.apply(final, a["age"])
        report["errors"][name]["coverage_of_final_table (in-sample)"] = intervals.coverage(low, high, a["truth"])
    return report


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
    retired = output_dir.rstrip("/") + ".retired"
    shutil.rmtree(retired, ignore_errors=True)
    if os.path.exists(output_dir):
        os.rename(output_dir, retired)
    os.rename(staging, output_dir)
    shutil.rmtree(retired, ignore_errors=True)
