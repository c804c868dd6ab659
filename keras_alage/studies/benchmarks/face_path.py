"""The face path's choices measured on validation faces: the AL member's crops and the detector.

`score_crops`: what the AL member's evaluation crops buy a multi-network release, and what they
cost. The release's AL member answers each face `crops` times (v5: `shift_flip`, ten views of its
64 px input) while face-api and faceres answer one view each. The release's answer is scored with
the AL member's crops changed and nothing else: the other members' answers are the release
study's own (`runs/release_v5/answers_<population>.npz`, computed on the same encoded crops, in the
same order), and the combined age is the release's recorded combination of the three. Errors are
paired against the release's crops over people (`metrics.subject_bootstrap`).

`score_precision`: the release's answers in each precision (`serving.precision`: float32, the
documented answer, and bfloat16) on the same validation faces, every member answered afresh through
the release's serving graph (`photos.serving_module`), the precisions in turn in this one process
(the option is read at each call). Per population: each one's error [95 % over people], the paired
difference to the first, the largest and median change of an answer, and, where the release
answers intervals, their coverage of the true age.

`compare`: the release's accuracy through two face paths on the same validation photos, paired
over people. A face path is a detector, a decode (`photos.DECODES`) and the AL member's crops; the
networks and the cut are the release's. Each photo is answered by its most confident face; a photo
one path answers and the other does not is counted and left out of the paired errors. Ages come
from the file names (FG-NET's `001A02.JPG`: person 001, 2 years; UTKFace's `26_1_0_...jpg`: 26
years, each photo its own person).
"""

import json
import os
import re
import time
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from keras_alage.evaluation import intervals, metrics
from keras_alage.models import attention, faceres_import, release
from keras_alage.serving import ensemble, export, photos, precision
from keras_alage.studies.releases import three_networks
from alage_pipelines import faces, files


def al_answers(model, crops: str, encoded: Sequence[bytes], batch: int = 32) -> np.ndarray:
    """The AL member's age of each encoded crop under `crops`."""
    server = export.AgeServer(model, crops)
    ages = []
    for start in range(0, len(encoded), batch):
        ages.append(server.serve_encoded(tf.constant(list(encoded[start:start + batch]), tf.string))["age"].numpy())
    return np.concatenate(ages)


def released_answer(description: dict, ages: Dict[str, np.ndarray], female: np.ndarray) -> np.ndarray:
    """The release's combined age from its members' ages (its recorded combination)."""
    combination = ensemble.Combination.from_json(release.recorded_combination(description))
    return np.asarray(ensemble.combine({m: ages[m] for m in combination.members}, combination, female), np.float64)


def score_crops(model_path: str, populations: Dict[str, tuple], cache_dir: str, crops: Sequence[str],
                log=print) -> dict:
    """Per population (name -> (build folder, parts or None[, FairFace's labels folder])) and crop
    choice: the release's error [95 % over people], the paired difference to its recorded crops,
    and the AL member's own error."""
    opened = release.open_model_path(model_path)
    description = opened.description
    model = opened.load()
    attention.freeze_attention_state(model)
    recorded = opened.crops or "ten"
    faceres = description["faceres"]
    scale = _scale_key(faceres, cache_dir)
    report = {"model": files.portable_path(model_path), "recorded_crops": recorded, "populations": {}}
    for name, where in populations.items():
        pop = three_networks.population_faces(name, *where)
        with np.load(os.path.join(cache_dir, f"answers_{name}.npz")) as stored:
            cached = {k: stored[k] for k in stored.files}
        if len(cached["faceapi_age"]) != len(pop["truth"]):
            raise ValueError(f"{cache_dir}: answers_{name}.npz holds {len(cached['faceapi_age'])} faces, the build "
                             f"{len(pop['truth'])}")
        members = {"faceapi": cached["faceapi_age"],
                   "faceres": faceres_import.readout(cached[f"faceres_probs/{scale}"], faceres["readout"])}
        rows, errors = {}, {}
        for choice in dict.fromkeys([recorded, *crops]):
            started = time.perf_counter()
            al = al_answers(model, choice, pop["encoded"])
            seconds = time.perf_counter() - started
            age = released_answer(description, dict(members, al=al), cached["faceapi_female"])
            errors[choice] = metrics.errors_outside(age, pop["low"], pop["high"])
            al_error = metrics.errors_outside(al, pop["low"], pop["high"])
            mean, low, high = metrics.subject_bootstrap(errors[choice], pop["subject"])
            rows[choice] = {"error": mean, "error_95": [low, high], "al_error": float(al_error.mean()),
                            "al_seconds": seconds}
            if choice == recorded:
                rows[choice]["cached_al_largest_difference"] = float(np.max(np.abs(al - cached["al_age"])))
            log(f"{name} {choice}: {mean:.3f} [{low:.3f}, {high:.3f}] (AL alone {al_error.mean():.3f}), "
                f"AL member {seconds:.0f} s")
        for choice in rows:
            if choice != recorded:
                d = metrics.subject_bootstrap(errors[choice] - errors[recorded], pop["subject"])
                rows[choice][f"minus_{recorded}"] = list(d)
        report["populations"][name] = {"faces": len(pop["truth"]), "people": len(np.unique(pop["subject"])),
                                       "crops": rows}
    return report


def _scale_key(faceres: dict, cache_dir: str) -> str:
    """The cached faceres answers' key of the release's cut (`three_networks.FACERES_SCALES`)."""
    with open(os.path.join(cache_dir, "faceres_cut.json"), encoding="utf-8") as f:
        base = json.load(f)["cut"]
    for scale in three_networks.FACERES_SCALES:
        cut = three_networks.scaled_cut(base, scale)
        if np.allclose([cut.x, cut.y, cut.width, cut.height],
                       [faceres["cut"][k] for k in ("x", "y", "width", "height")], atol=1e-6):
            return str(scale)
    raise ValueError(f"{cache_dir}: no cached faceres cut is the release's {faceres['cut']}")


def served_answers(server, encoded: Sequence[bytes], batch: int = 32) -> Dict[str, np.ndarray]:
    """A serving graph's (`serve_encoded`) age of each encoded crop, and its interval where it has one."""
    parts = []
    for start in range(0, len(encoded), batch):
        answered = server.serve_encoded(tf.constant(list(encoded[start:start + batch]), tf.string))
        parts.append({k: np.asarray(answered[k], np.float64) for k in ("age", "age_low", "age_high") if k in answered})
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]} if parts else {}


def precision_rows(answers: Dict[str, Dict[str, np.ndarray]], pop: dict) -> dict:
    """Per precision (the first the reference): the error [95 % over people], the paired difference
    to the reference, the largest and median |change| of an age, and the interval's coverage."""
    reference = next(iter(answers))
    errors = {name: metrics.errors_outside(a["age"], pop["low"], pop["high"]) for name, a in answers.items()}
    rows = {}
    for name, answered in answers.items():
        mean, low, high = metrics.subject_bootstrap(errors[name], pop["subject"])
        row = {"error": mean, "error_95": [low, high]}
        if name != reference:
            change = np.abs(answered["age"] - answers[reference]["age"])
            paired = metrics.subject_bootstrap(errors[name] - errors[reference], pop["subject"])
            row[f"minus_{reference}"] = list(paired)
            row["age_change_max"], row["age_change_median"] = float(change.max()), float(np.median(change))
        if "age_low" in answered:
            row["coverage"] = intervals.coverage(answered["age_low"], answered["age_high"], pop["truth"])["all"]
        rows[name] = row
    return rows


def score_precision(model_path: str, populations: Dict[str, tuple],
                    precisions: Sequence[str] = ("float32", "bfloat16"), log=print) -> dict:
    """Per population (name -> (build folder, parts or None)): the release answered in each of
    `precisions` (the first the reference; `precision_rows`). A precision this CPU lacks is refused
    before anything is loaded."""
    for name in precisions:
        precision.check(name)
    server = photos.serving_module(release.open_model_path(model_path))
    report = {"model": files.portable_path(model_path), "precisions": list(precisions), "populations": {}}
    for name, where in populations.items():
        pop = three_networks.population_faces(name, *where)
        answers = {}
        for chosen in precisions:
            with precision.using(chosen):
                started = time.perf_counter()
                answers[chosen] = served_answers(server, pop["encoded"])
                log(f"{name} {chosen}: {len(pop['encoded'])} faces in {time.perf_counter() - started:.0f} s")
        rows = precision_rows(answers, pop)
        for chosen, row in rows.items():
            log(f"{name} {chosen}: {row['error']:.3f} [{row['error_95'][0]:.3f}, {row['error_95'][1]:.3f}]"
                + (f", largest change {row['age_change_max']:.3f} years" if "age_change_max" in row else ""))
        report["populations"][name] = {"faces": len(pop["truth"]), "people": len(np.unique(pop["subject"])),
                                       "precisions": rows}
    return report


# --- the detector ---------------------------------------------------------------------------------------


FGNET_NAME = re.compile(r"^(\d+)A(\d+)", re.IGNORECASE)


def fgnet_labels(paths: Sequence[str]) -> Dict[str, tuple]:
    """path -> (person, age) for FG-NET's file names."""
    labels = {}
    for path in paths:
        found = FGNET_NAME.match(os.path.basename(path))
        if found:
            labels[path] = (found.group(1), float(found.group(2)))
    return labels


def utkface_labels(paths: Sequence[str]) -> Dict[str, tuple]:
    """path -> (the photo itself as its person: UTKFace has no person ids, age) for UTKFace's
    AGE_GENDER_RACE_DATE file names."""
    labels = {}
    for path in paths:
        age = os.path.basename(path).split("_")[0]
        if age.isdigit():
            labels[path] = (path, float(age))
    return labels


LABELS = {"fgnet": fgnet_labels, "utkface": utkface_labels}


def located(paths: Sequence[str], detector_name: str, spec: faces.CropSpec, decode: str = "scaled",
            fallback: str = "mtcnn") -> Dict[str, photos.PhotoFaces]:
    """Each photo's faces and crops through `detector_name` (with `fallback`, as predict.py)."""
    detector = photos.photo_detector(faces.CropSpec(spec.size, spec.margin, spec.square, detector_name), fallback)
    return {path: photos.locate_faces(path, detector, spec, decode=decode) for path in paths}


def best_ages(found: Dict[str, photos.PhotoFaces], predict: photos.Predictor, batch: int = 32) -> Dict[str, float]:
    """The age of each photo's most confident face (photos without a face are left out)."""
    items = [(path, item) for path, item in found.items() if item.crops]
    best = [int(np.argmax([f.confidence for f in item.found])) for _, item in items]
    crops = [item.crops[i] for (_, item), i in zip(items, best)]
    ages = []
    for start in range(0, len(crops), batch):
        ages.append(np.asarray(predict(crops[start:start + batch])["age"], np.float64))
    ages = np.concatenate(ages) if ages else np.zeros(0)
    return {path: float(age) for (path, _), age in zip(items, ages)}


def paired(ages: Dict[str, Dict[str, float]], labels: Dict[str, tuple], reference: str) -> dict:
    """MAE [95 % over people] of each path on the photos every path answered, and the paired
    difference to `reference`."""
    common = sorted(set.intersection(*(set(a) for a in ages.values())) & set(labels))
    people = np.array([labels[p][0] for p in common])
    truth = np.array([labels[p][1] for p in common])
    errors = {name: np.abs(np.array([a[p] for p in common]) - truth) for name, a in ages.items()}
    rows = {"photos": len(common), "people": int(len(set(people))), "answered": {n: len(a) for n, a in ages.items()},
            "paths": {}}
    for name, error in errors.items():
        mean, low, high = metrics.subject_bootstrap(error, people)
        row = {"mae": mean, "mae_95": [low, high]}
        if name != reference:
            row[f"minus_{reference}"] = list(metrics.subject_bootstrap(error - errors[reference], people))
        rows["paths"][name] = row
    return rows


def crop_agreement(a: Dict[str, photos.PhotoFaces], b: Dict[str, photos.PhotoFaces]) -> Optional[dict]:
    """How the most confident face's box of path b sits against path a's on the same photos: centre
    distance and side ratio, in a's box sides (medians and 90th percentiles)."""
    offsets, ratios, rolls = [], [], []
    for path, item in a.items():
        other = b.get(path)
        if not item.found or other is None or not other.found:
            continue
        fa = max(item.found, key=lambda f: f.confidence)
        fb = max(other.found, key=lambda f: f.confidence)
        offsets.append(np.hypot(fa.center[0] - fb.center[0], fa.center[1] - fb.center[1]) / fa.size[0])
        ratios.append(fb.size[0] / fa.size[0])
        rolls.append(abs(fb.angle - fa.angle))
    if not offsets:
        return None
    return {"faces": len(offsets), "centre_offset_median": float(np.median(offsets)),
            "centre_offset_p90": float(np.percentile(offsets, 90)), "side_ratio_median": float(np.median(ratios)),
            "side_ratio_p10_p90": [float(np.percentile(ratios, 10)), float(np.percentile(ratios, 90))],
            "roll_difference_p90": float(np.percentile(rolls, 90))}


def compare(paths: Sequence[str], model_path: str, detectors: Sequence[str] = ("dlib", "blazeface"),
            crops: Sequence[str] = ("shift_flip", "center"), population: str = "fgnet", log=print) -> dict:
    """The release through each detector and AL crops on a population's photos (`LABELS`): MAE per
    path, paired against the first detector with the first crops (today's path)."""
    labels = LABELS[population](paths)
    predictors = {c: photos.load_predictor(model_path, c) for c in crops}
    spec = photos.face_crop_for(predictors[crops[0]])
    found = {}
    for name in detectors:
        found[name] = located(paths, name, spec, "full" if name == detectors[0] else "scaled")
        log(f"{name}: faces in {sum(bool(f.crops) for f in found[name].values())} of {len(paths)} photos")
    ages = {f"{d}/{c}": best_ages(found[d], predictors[c]) for d in detectors for c in crops}
    report = paired(ages, labels, f"{detectors[0]}/{crops[0]}")
    report["boxes"] = {d: crop_agreement(found[detectors[0]], found[d]) for d in detectors[1:]}
    report["model"] = files.portable_path(model_path)
    return report
