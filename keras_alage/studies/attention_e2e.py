"""The paper's attention LSTM network trained here end to end, and its fair test (issue 35).

Backbone: face-api's TinyXception imported exactly (MIT), at 112 px a 7x7x512 map, fine-tuned.
Faces: all our labelled UTKFace faces cut as the release cuts (`data/utkface_dlib`, its "train"
part; a tenth held aside by a hash of the path for validation); scored on UTKFace's held-out
"test" part, every FG-NET photo (`data/fgnet_release`, 5 subject folds) and FairFace's 270
(`data/fairface_release`, which no teacher saw).

In the paper's order:
  1. teachers: dlib's (inside v3.1, `al_age`), face-api's and faceres-deep's answers on every face,
     computed once and cached with their provenance (`TEACHERS`: which faces each has seen); their
     mean, a normal of `Recipe.teacher_sigma` years about it, is a soft target beside the label
     (`losses.TEACHER_PROBS`), weighted per face;
  2. the global stage: backbone and global head from face-api's weights, on the training faces
     with shift and scale augmentation (`Recipe.area_range`: a random square-ish window of 60-100 %
     of the face's area, so the face moves and changes size), run to `global_epochs` and
     validated after each; the teacher weight (at the middle rate), then the rate (at that weight)
     and the epoch are chosen on validation. "Converged" is the chosen epoch's weights, and a choice
     at a grid's edge is reported (`grid_edges`);
  3. the attention stage from that converged model (backbone and global head frozen), the box
     `attention.MovableBox` (it can shrink and move from any box), local heads "copied" (a copy of
     the converged global head) and "fresh"; rate and epoch chosen on validation;
  4. the equal-step control: the global stage trained on from the converged model for exactly
     the steps of the chosen attention run (copied), at the chosen rate and teacher weight;
  5. the combined answer P_g + lambda P_l uses the converged global head (the one the attention
     stage froze): at the paper's lambda 0.5 and at lambda chosen on validation (FG-NET also
     nested over its folds: chosen on four, scored on the fifth).
Scoring: each answer against the control, paired over people, overall and per age band, with
95 % bootstraps; global, local, combined, control and each teacher. The box: its spread between
faces and its response to a face moved in the crop (`reporting.translation_response`). Memory:
carried across each population's faces in path order against reset, paired
(`evaluation.memory`). Every run resumes (the loop's checkpoints); predictions and teachers' answers
are cached under the study's folder, and a rerun reads them back.
"""

import dataclasses
import hashlib
import io
import json
import os
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from keras_alage.evaluation import memory, metrics
from keras_alage.models import age_model, attention, faceapi_import, release, weight_import
from keras_alage.models.age_model import ModelConfig
from keras_alage.serving import photos
from keras_alage.studies import reporting
from keras_alage.studies.releases import three_networks as release_v5, two_networks as release_v4
from keras_alage.training import losses, loop, run_files, workers
from alage_pipelines import augment, build, files

# Which faces each teacher has seen (its own documentation): a teacher that saw a population is
# flattered there, and teaches labels it has learnt on the faces it saw.
TEACHERS = {
    "al": {"output": "al_age", "network": "dlib's CC0 age network inside our AL model v3.1 (one centre view)",
           "seen": "dlib's training faces (unpublished; about 110k, may include FG-NET) and v3.1's fine-tuning on "
                   "UTKFace's train part (data/utkface_dlib), i.e. every UTKFace training face here"},
    "faceapi": {"output": "faceapi_age", "network": "face-api's age network (MIT)",
                "seen": "80 % of UTKFace and FG-NET among others (face-api's README), so most of both"},
    "faceres": {"output": "faceres_age", "network": "HSE's faceres-deep (npm, MIT)",
                "seen": "IMDB-WIKI (HSE's paper); none of UTKFace, FG-NET or FairFace"},
}
POPULATIONS = ("utkface", "fgnet", "fairface")
BAND_EDGES = metrics.DEFAULT_BAND_EDGES


@dataclasses.dataclass(frozen=True)
class Recipe:
    """What the study runs; `experiments/attention_e2e.py` holds the real one."""

    input_size: int = 112
    batch_size: int = 32
    validation_share: float = 0.1
    teacher_sigma: float = 3.0
    teacher_weights: Tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    global_rates: Tuple[float, ...] = (0.003, 0.01, 0.03)
    global_epochs: int = 30
    global_decay_epoch: Optional[int] = None  # the global stage's rate falls tenfold after this epoch
    attention_rates: Tuple[float, ...] = (0.0003, 0.001, 0.003, 0.01)  # the box reached a bound at 0.01
    attention_epochs: int = 20
    local_weights: Tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
    paper_local_weight: float = 0.5
    max_box_size: float = 1.0
    area_range: Tuple[float, float] = (0.6, 1.0)
    train_limit: Optional[int] = None  # faces of each part read (a smoke run); None: all
    epoch_faces: Optional[int] = None  # training faces drawn per epoch (validated after each); None: all
    memory_limit: int = 600  # faces per population for the carried-memory pass (one at a time)
    translation_faces: int = 64
    seed: int = 0

    def model_config(self) -> ModelConfig:
        return ModelConfig(layout="faceapi", input_size=self.input_size, age_classes="utkface", box="movable",
                           max_box_size=self.max_box_size, local_weight=self.paper_local_weight)


# --- faces ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Faces:
    """One population's faces: encoded crops, the true age (FairFace: its group's middle) and its
    bounds [low, high), person, path and, for FG-NET, fold."""

    encoded: List[bytes]
    truth: np.ndarray
    low: np.ndarray
    high: np.ndarray
    subject: np.ndarray
    path: np.ndarray
    fold: Optional[np.ndarray] = None

    def take(self, index) -> "Faces":
        index = np.asarray(index, int)
        return Faces([self.encoded[i] for i in index], self.truth[index], self.low[index], self.high[index],
                     self.subject[index], self.path[index], None if self.fold is None else self.fold[index])

    def __len__(self):
        return len(self.encoded)


def _faces(pop: dict, fold=None) -> Faces:
    return Faces(list(pop["encoded"]), np.asarray(pop["truth"], np.float64), np.asarray(pop["low"], np.float64),
                 np.asarray(pop["high"], np.float64), np.asarray(pop["subject"]), np.asarray(pop["path"]), fold)


def validation_side(paths: Sequence[str], share: float) -> np.ndarray:
    """True for the faces held aside for validation: a hash of each path, so the split never moves."""
    return np.array([int(hashlib.sha256(p.encode()).hexdigest()[:8], 16) / 16**8 < share for p in paths])


def load_faces(utkface: str, fgnet: str, fairface: str, fairface_labels: str, limit: Optional[int] = None,
               validation_share: float = Recipe.validation_share) -> Dict[str, Faces]:
    """"train" and "validation" (UTKFace's train part) and the three scored populations."""
    def cut(faces: Faces) -> Faces:  # evenly over the part: its files run in name order, UTKFace's by age
        return faces if limit is None or limit >= len(faces) else faces.take(
            np.unique(np.linspace(0, len(faces) - 1, limit).round().astype(int)))

    encoded, ages, paths = release_v4.faces_of(utkface, ["train"])
    training = Faces(encoded, ages, ages, ages, np.array(paths), np.array(paths))
    held = validation_side(paths, validation_share)
    found = {"train": cut(training.take(np.flatnonzero(~held))), "validation": cut(training.take(np.flatnonzero(held))),
             "utkface": cut(_faces(release_v5.population_faces("utkface", utkface, ["test"])))}
    folds = sorted(build.Build.open(fgnet).folds)
    per_fold = [_faces(release_v5.population_faces("fgnet", fgnet, [f]), np.full(0, "")) for f in folds]
    for fold, faces in zip(folds, per_fold):
        faces.fold = np.full(len(faces), fold)
    fgnet_faces = per_fold[0]
    for more in per_fold[1:]:
        fgnet_faces = Faces(fgnet_faces.encoded + more.encoded, *(np.concatenate([getattr(fgnet_faces, k),
                            getattr(more, k)]) for k in ("truth", "low", "high", "subject", "path", "fold")))
    if limit is not None:  # a few faces of every fold, spread over its people
        keep = []
        for f in folds:
            inside = np.flatnonzero(fgnet_faces.fold == f)
            keep.append(inside[np.unique(np.linspace(0, len(inside) - 1, max(2, limit // len(folds))).round().astype(int))])
        fgnet_faces = fgnet_faces.take(np.concatenate(keep))
    found["fgnet"] = fgnet_faces
    found["fairface"] = cut(_faces(release_v5.population_faces("fairface", fairface, None, fairface_labels)))
    return found


def faceapi_backbone(source: str = "installed") -> Callable:
    """model -> face-api's weights written into its backbone (the global stage's start)."""
    weights = faceapi_import.read_faceapi_age_net(source)
    return lambda model: faceapi_import.import_faceapi_age(model.get_layer("backbone"), weights)


# --- teachers ----------------------------------------------------------------------------------


def v5_teacher(v5_dir: str, crops: str = "center") -> Tuple[Callable[[Sequence[bytes]], Dict[str, np.ndarray]], str]:
    """(answer encoded crops -> {teacher: ages}, the weights' and crops' identity) from release v5's
    server, its AL member answering `crops` (default one centre view: a tenth of its ten crops' time,
    and a soft target 3 years wide needs no more; face-api and faceres answer one view either way)."""
    opened = release.open_model_path(v5_dir)
    server = photos.serving_module(opened, crops)
    description = opened.description
    identity = "+".join(description[k]["weights"]["sha256"] if k != "weights" else description[k]["sha256"]
                        for k in ("weights", "faceapi", "faceres") if k in description) + f"+crops={crops}"

    def answer(encoded):
        out = server.serve_encoded(tf.constant(list(encoded), tf.string))
        return {name: np.asarray(out[t["output"]], np.float64) for name, t in TEACHERS.items()}

    return answer, identity


def teacher_answers(faces: Faces, answer, identity: str, cache: str, batch: int = 32,
                    save_every: int = 20) -> Dict[str, np.ndarray]:
    """Every teacher's age for each face, cached in `cache` (.npz, keyed by path and the teachers'
    identity; a cache of other faces or weights is recomputed) with `TEACHERS` beside it (.json).
    Answers so far are kept every `save_every` batches (`cache`.partial.npz), so a killed run
    resumes where it stopped."""
    def stored(path):
        if os.path.exists(path):
            with np.load(path) as archive:
                if str(archive["identity"]) == identity and list(archive["path"]) == list(faces.path):
                    return {name: archive[name] for name in TEACHERS}
        return None

    def save(path, found):
        buffer = io.BytesIO()
        np.savez(buffer, identity=np.array(identity), path=np.asarray(faces.path), **found)
        files.write_atomically(path, buffer.getvalue())

    done = stored(cache)
    if done is not None:
        return done
    os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
    partial = cache + ".partial.npz"
    found = stored(partial) or {name: np.zeros(0) for name in TEACHERS}
    chunks = {name: [found[name]] for name in TEACHERS}
    start = len(found["al"])
    for count, offset in enumerate(range(start, len(faces), batch), 1):
        for name, ages in answer(faces.encoded[offset : offset + batch]).items():
            chunks[name].append(np.asarray(ages, np.float64))
        if count % save_every == 0:
            save(partial, {name: np.concatenate(v) for name, v in chunks.items()})
    result = {name: np.concatenate(v) for name, v in chunks.items()}
    save(cache, result)
    if os.path.exists(partial):
        os.remove(partial)
    files.write_atomically(os.path.splitext(cache)[0] + ".json",
                           json.dumps({"identity": identity, "faces": len(faces), "teachers": TEACHERS}, indent=1))
    return result


def teacher_targets(answers: Dict[str, np.ndarray], class_ages, sigma: float) -> np.ndarray:
    """The teachers' mean age per face as a soft target over the classes."""
    return losses.soft_targets(np.mean([answers[n] for n in TEACHERS], axis=0), class_ages, sigma)


# --- data ----------------------------------------------------------------------------------------


def _labels(faces: Faces, classes, targets=None, weight: float = 0.0) -> dict:
    clipped = np.clip(np.round(faces.truth), classes.values[0], classes.values[-1])
    labels = {"label": np.array([classes.label_of_age(a) for a in clipped], np.int32),
              "age": faces.truth.astype(np.float32), "path": faces.path.astype(str)}
    if targets is not None:
        labels[losses.TEACHER_PROBS] = targets.astype(np.float32)
        labels[losses.TEACHER_WEIGHT] = np.full(len(faces), weight, np.float32)
    return labels


def training_data(faces: Faces, classes, recipe: Recipe, targets=None, weight: float = 0.0, seed: int = 0):
    """Endless augmented batches: a random window of `recipe.area_range` of the face (shift and
    scale), mirrored at random; no colour change."""
    data = tf.data.Dataset.from_tensor_slices((tf.constant(faces.encoded, tf.string),
                                               _labels(faces, classes, targets, weight)))
    size, area = recipe.input_size, tuple(recipe.area_range)

    def view(encoded, labels):
        image = augment.decode_random_sized_crop(encoded, size, area_range=area)  # shift and scale
        return augment.normalize(augment.random_flip(image)), labels

    return (data.repeat().shuffle(min(len(faces), 4096), seed=seed).map(view, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(recipe.batch_size, drop_remainder=True).prefetch(2))


def eval_images(faces: Faces, input_size: int, batch: int = 64):
    """Centre views, in order, batched (images only)."""
    data = tf.data.Dataset.from_tensor_slices(tf.constant(faces.encoded, tf.string))
    return data.map(lambda e: augment.preprocess_for_eval(augment.decode(e), input_size, "center"),
                    num_parallel_calls=tf.data.AUTOTUNE).batch(batch)


def eval_data(faces: Faces, classes, input_size: int):
    labels = tf.data.Dataset.from_tensor_slices(_labels(faces, classes)).batch(64)
    return tf.data.Dataset.zip((eval_images(faces, input_size), labels))


# --- choices -----------------------------------------------------------------------------------------


def choose_epoch(curves: Dict[str, Sequence[float]]) -> Tuple[str, int, float]:
    """(setting, epochs, value) with the lowest validation value over every setting's per-epoch curve
    (ties: the earlier epoch, then the setting first named)."""
    order = {name: i for i, name in enumerate(curves)}
    value, epochs, name = min(((v, e + 1, n) for n, c in curves.items() for e, v in enumerate(c)),
                              key=lambda t: (t[0] if np.isfinite(t[0]) else np.inf, t[1], order[t[2]]))
    return name, epochs, value  # a diverged run's nan or inf is never chosen over a number


def grid_edges(grids: Dict[str, Sequence[float]], chosen: Dict[str, float], epochs: Optional[int] = None,
               max_epochs: Optional[int] = None) -> List[str]:
    """What a choice left at a grid's edge: a value chosen at the first or last of a grid of more
    than one (the best may lie beyond it), or the last epoch run (validation was still falling)."""
    found = []
    for name, grid in grids.items():
        grid = sorted(grid)
        if len(grid) > 1 and chosen[name] in (grid[0], grid[-1]):
            found.append(f"{name}={chosen[name]:g} at the {'low' if chosen[name] == grid[0] else 'high'} edge of "
                         f"{[float(g) for g in grid]}")
    if epochs is not None and max_epochs is not None and epochs >= max_epochs:
        found.append(f"epochs={epochs}: the last epoch run")
    return found


def combine(global_probs, local_probs, local_weight: float) -> np.ndarray:
    """P = (P_g + lambda P_l) / (1 + lambda), as `heads.CombinePredictions`."""
    return metrics.combine_heads(global_probs, local_probs, local_weight)


def nested_choice(errors: Dict[str, np.ndarray], folds: np.ndarray) -> Tuple[np.ndarray, Dict[str, str]]:
    """Per-face errors where each fold's faces are answered by the setting with the least mean error
    over the other folds' faces (ties: the setting first named), and the choice per fold."""
    names = list(errors)
    folds = np.asarray(folds)
    result = np.full(len(folds), np.nan)
    chosen = {}
    for fold in sorted(set(folds.tolist())):
        inside = folds == fold
        best = min(names, key=lambda n: (float(np.mean(errors[n][~inside])), names.index(n)))
        chosen[str(fold)] = best
        result[inside] = errors[best][inside]
    return result, chosen


def outside(predicted, faces: Faces) -> np.ndarray:
    return metrics.errors_outside(predicted, faces.low, faces.high)


def paired_rows(errors: Dict[str, np.ndarray], faces: Faces, reference: str) -> dict:
    """Each answer's error with its 95 % bootstrap over people, and its difference from
    `reference` paired on the same faces, overall and per band of the true age."""
    bands = np.searchsorted(np.asarray(BAND_EDGES[1:]), faces.truth, side="right")
    rows = {}
    for name, err in errors.items():
        row = {}
        for band in ["all"] + sorted(set(bands.tolist())):
            inside = np.ones(len(err), bool) if band == "all" else bands == band
            label = "all" if band == "all" else metrics.band_label(BAND_EDGES[band],
                                                                   BAND_EDGES[band + 1] if band + 1 < len(BAND_EDGES) else None)
            mean, low, high = metrics.subject_bootstrap(err[inside], faces.subject[inside])
            cell = {"faces": int(inside.sum()), "error": mean, "low": low, "high": high}
            if name != reference:
                d, dl, dh = metrics.subject_bootstrap(err[inside] - errors[reference][inside], faces.subject[inside])
                cell["minus_reference"] = {"mean": d, "low": dl, "high": dh}
            row[label] = cell
        rows[name] = row
    return rows


# --- the study ---------------------------------------------------------------------------------------


class Study:
    """The whole study under `root`, resumable. `init_backbone(model)` writes the starting weights
    (face-api's by default); `teacher(encoded) -> {teacher: ages}` answers faces, `teacher_identity`
    names the weights behind it (the cache key)."""

    def __init__(self, faces: Dict[str, Faces], root: str, recipe: Recipe, teacher, teacher_identity: str,
                 init_backbone: Optional[Callable] = None, log=print):
        self.faces, self.root, self.recipe, self.log = faces, root, recipe, log
        self.teacher, self.teacher_identity = teacher, teacher_identity
        self.init_backbone = init_backbone or faceapi_backbone()
        self.config = recipe.model_config()
        self.classes = self.config.classes()
        self.choices: dict = self._read("choices.json") or {}

    # -- files --

    def _path(self, *parts) -> str:
        return os.path.join(self.root, *parts)

    def _read(self, name: str):
        path = self._path(name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
        return None

    def _save_choices(self) -> None:
        os.makedirs(self.root, exist_ok=True)
        files.write_atomically(self._path("choices.json"), json.dumps(self.choices, indent=1, sort_keys=True) + "\n")

    # -- teachers --

    def answers(self, name: str) -> Dict[str, np.ndarray]:
        return teacher_answers(self.faces[name], self.teacher, self.teacher_identity,
                               self._path("teachers", f"{name}.npz"))

    # -- runs --

    def _steps(self) -> int:
        return workers.steps_per_epoch(self.recipe.epoch_faces or len(self.faces["train"]), self.recipe.batch_size)

    def _train(self, run_dir: str, stage: str, rate: float, epochs: int, weight: float, start_weights=None,
               local: Optional[str] = None, validate: bool = True, decay_epoch: Optional[int] = None):
        """One run (resumes where it stopped); returns (model, history)."""
        recipe = self.recipe
        decay = (decay_epoch,) if decay_epoch is not None and decay_epoch < epochs else ()
        config = loop.TrainConfig(run_dir=run_dir, stage=stage, epochs=epochs, steps_per_epoch=self._steps(),
                                  batch_size=recipe.batch_size, learning_rate=rate, lr_decay_epochs=decay,
                                  momentum=0.9, weight_decay=1e-4, image_summaries=0, seed=recipe.seed)

        def build_model():
            model = age_model.build_age_model(self.config)
            if start_weights is None:
                self.init_backbone(model)
            else:
                model.load_weights(start_weights)
            if local == "copied":
                weight_import.local_head_from_global(model)
            age_model.set_trained_heads(model, ("global",) if stage == "global" else ("global", "local"))
            attention.reset_attention_state(model)
            return model

        os.makedirs(run_dir, exist_ok=True)
        trainer = loop.Trainer(build_model, self.classes.values, config)
        targets = teacher_targets(self.answers("train"), self.classes.values, recipe.teacher_sigma) if weight else None
        data = training_data(self.faces["train"], self.classes, recipe, targets, weight, recipe.seed)
        validation = eval_data(self.faces["validation"], self.classes, recipe.input_size) if validate else None
        history = trainer.fit(data, validation, verbose=0)
        return trainer.model, history

    def _grid_runs(self, stage_dir: str, stage: str, settings: Dict[str, Tuple[float, float]], epochs: int,
                   start=None, local=None, decay_epoch: Optional[int] = None) -> Dict[str, dict]:
        runs = {}
        for name, (rate, weight) in settings.items():
            run_dir = self._path(stage_dir, name)
            _, history = self._train(run_dir, stage, rate, epochs, weight, start, local, decay_epoch=decay_epoch)
            runs[name] = {"run_dir": run_dir, "rate": rate, "teacher_weight": weight,
                          "curve": [h["val_mae"] for h in history],
                          "seconds": [h["train_seconds"] for h in history[1:]]}  # the first compiles
            self.log(f"{stage_dir}/{name}: best validation MAE {min(runs[name]['curve']):.3f}")
        return runs

    @staticmethod
    def _name(rate: float, weight: float) -> str:
        return f"lr{rate:g}-teacher{weight:g}"

    def global_stage(self) -> dict:
        """Teacher weight at the middle rate, then the rate at that weight; epochs on validation."""
        recipe = self.recipe
        middle = sorted(recipe.global_rates)[len(recipe.global_rates) // 2]
        first = {self._name(middle, w): (middle, w) for w in recipe.teacher_weights}
        runs = self._grid_runs("global", "global", first, recipe.global_epochs, decay_epoch=recipe.global_decay_epoch)
        best, _, _ = choose_epoch({n: r["curve"] for n, r in runs.items()})
        weight = runs[best]["teacher_weight"]
        second = {self._name(r, weight): (r, weight) for r in recipe.global_rates}
        runs.update(self._grid_runs("global", "global", second, recipe.global_epochs,
                                    decay_epoch=recipe.global_decay_epoch))
        name, epochs, value = choose_epoch({n: runs[n]["curve"] for n in second})
        chosen = runs[name]
        decayed = recipe.global_decay_epoch is not None and epochs > recipe.global_decay_epoch
        self.choices["global"] = {
            "run": name, "rate": chosen["rate"], "teacher_weight": weight, "epochs": epochs, "validation_mae": value,
            "rate_at_chosen_epoch": chosen["rate"] * (loop.TrainConfig.lr_decay if decayed else 1.0),
            "weights": os.path.join(chosen["run_dir"], run_files.BEST_WEIGHTS),
            "at_grid_edge": grid_edges({"teacher_weight": recipe.teacher_weights}, {"teacher_weight": weight})
            + grid_edges({"rate": recipe.global_rates}, {"rate": chosen["rate"]}, epochs, recipe.global_epochs),
            "curves": {n: r["curve"] for n, r in runs.items()}}
        seconds = [t for r in runs.values() for t in r["seconds"]]
        if seconds:  # training speed of the global stage (backbone and head, augmentation), this machine
            self.choices["global"]["images_per_second"] = float(
                self._steps() * recipe.batch_size / np.median(seconds))
        self._save_choices()
        return self.choices["global"]

    def attention_stage(self, local: str) -> dict:
        recipe, start = self.recipe, self.choices["global"]
        weight = start["teacher_weight"]
        settings = {self._name(r, weight): (r, weight) for r in recipe.attention_rates}
        runs = self._grid_runs(f"attention_{local}", "attention", settings, recipe.attention_epochs,
                               start["weights"], local)
        name, epochs, value = choose_epoch({n: r["curve"] for n, r in runs.items()})
        self.choices[f"attention_{local}"] = {
            "run": name, "rate": runs[name]["rate"], "epochs": epochs, "validation_local_mae": value,
            "steps": epochs * self._steps(), "weights": os.path.join(runs[name]["run_dir"], run_files.BEST_WEIGHTS),
            "at_grid_edge": grid_edges({"rate": recipe.attention_rates}, {"rate": runs[name]["rate"]}, epochs,
                                       recipe.attention_epochs),
            "curves": {n: r["curve"] for n, r in runs.items()}}
        self._save_choices()
        return self.choices[f"attention_{local}"]

    def control(self) -> dict:
        """The global stage trained on from the converged model for the attention run's steps, at the
        rate the global stage had reached at its chosen epoch."""
        start, steps = self.choices["global"], self.choices["attention_copied"]["steps"]
        epochs = max(1, round(steps / self._steps()))
        run_dir = self._path("control")
        rate = start.get("rate_at_chosen_epoch", start["rate"])
        model, _ = self._train(run_dir, "global", rate, epochs, start["teacher_weight"], start["weights"],
                               validate=False)
        final = os.path.join(run_dir, "final.weights.h5")  # the state after exactly these steps, not a best epoch
        model.save_weights(os.path.join(run_dir, "final.partial.weights.h5"))
        os.replace(os.path.join(run_dir, "final.partial.weights.h5"), final)
        self.choices["control"] = {"epochs": epochs, "steps": epochs * self._steps(), "rate": rate,
                                   "teacher_weight": start["teacher_weight"], "weights": final}
        self._save_choices()
        return self.choices["control"]

    # -- answers --

    def _model(self, weights: str):
        model = age_model.build_age_model(self.config)
        model.load_weights(weights)
        age_model.set_trained_heads(model, ("global", "local"))
        return model

    def predictions(self, which: str, population: str) -> Dict[str, np.ndarray]:
        """global and local probabilities and the box of a chosen model on a population (cached)."""
        path = self._path("predictions", f"{which}_{population}.npz")
        faces = self.faces[population]
        if os.path.exists(path):
            with np.load(path) as stored:
                if list(stored["path"]) == list(faces.path):
                    return {k: stored[k] for k in stored.files if k != "path"}
        model = self._model(self.choices[which]["weights"])
        found = {"global_probs": [], "local_probs": [], "box": []}
        for images in eval_images(faces, self.recipe.input_size):
            out = model(images, training=False)
            for key in found:
                found[key].append(np.asarray(out[key]))
        result = {k: np.concatenate(v) for k, v in found.items()}
        buffer = io.BytesIO()
        np.savez(buffer, path=faces.path, **result)
        files.write_atomically(path, buffer.getvalue())
        return result

    def _age(self, probs) -> np.ndarray:
        return np.asarray(probs, np.float64) @ np.asarray(self.classes.values, np.float64)

    def local_weight_on_validation(self, which: str) -> Tuple[float, dict]:
        pred = self.predictions(which, "validation")
        faces = self.faces["validation"]
        table = {f"{w:g}": float(outside(self._age(combine(pred["global_probs"], pred["local_probs"], w)), faces).mean())
                 for w in self.recipe.local_weights}
        best = min(self.recipe.local_weights, key=lambda w: (table[f"{w:g}"], w))
        return best, table

    def our_answer(self) -> str:
        """The combined answer (copied or fresh local head, each at its chosen lambda) with the lower
        validation error: the candidate member beside the teachers, who are release v5's networks."""
        local = min(("copied", "fresh"), key=lambda l: min(self.choices[f"attention_{l}"]["local_weight_curve"].values()))
        return f"combined_{local}_chosen"

    def answers_on(self, population: str) -> Dict[str, np.ndarray]:
        """Every answer's age on a population."""
        ages = {}
        control = self.predictions("control", population)
        for local in ("copied", "fresh"):
            pred = self.predictions(f"attention_{local}", population)
            if local == "copied":
                ages["global"] = self._age(pred["global_probs"])  # the converged head (frozen in the stage)
            ages[f"local_{local}"] = self._age(pred["local_probs"])
            ages[f"combined_{local}"] = self._age(combine(pred["global_probs"], pred["local_probs"],
                                                          self.recipe.paper_local_weight))
            chosen = self.choices[f"attention_{local}"]["local_weight"]
            ages[f"combined_{local}_chosen"] = self._age(combine(pred["global_probs"], pred["local_probs"], chosen))
        ages["control"] = self._age(control["global_probs"])
        teachers = self.answers(population)
        for name in TEACHERS:
            ages[f"teacher_{name}"] = teachers[name]
        members = [teachers[n] for n in TEACHERS]
        ages["teachers_mean"] = np.mean(members, axis=0)
        ages["teachers_and_ours"] = np.mean(members + [ages[self.choices["ours"]]], axis=0)
        return ages

    def box_study(self, which: str = "attention_copied") -> dict:
        model = self._model(self.choices[which]["weights"])
        attention.freeze_attention_state(model)
        faces = self.faces["utkface"]
        boxes = self.predictions(which, "utkface")["box"]
        shift = max(1, round(4 * self.recipe.input_size / 112))
        return {"movement": reporting.box_movement(boxes),
                "translation": reporting.translation_response(model, faces.encoded[: self.recipe.translation_faces],
                                                              self.recipe.input_size, shift)}

    def memory_study(self, population: str, which: str = "attention_copied") -> dict:
        faces = self.faces[population]
        order = memory.fixed_order(faces.path)[: self.recipe.memory_limit]
        ordered = faces.take(order)
        model = self._model(self.choices[which]["weights"])
        result = memory.memory_predictions(model, eval_images(ordered, self.recipe.input_size, 32),
                                           outputs=("age", "local_age"))
        row = {"order": "sorted by path", "faces": len(ordered)}
        for output in ("age", "local_age"):
            paired = memory.paired_errors(result, ordered.truth, output, ordered.low, ordered.high)
            mean, low, high = metrics.subject_bootstrap(paired["carried_minus_reset"], ordered.subject)
            row[output] = {"carried": float(paired["carried"].mean()), "reset": float(paired["reset"].mean()),
                           "carried_minus_reset": {"mean": mean, "low": low, "high": high}}
        return row

    def run(self) -> dict:
        if "global" not in self.choices:
            self.global_stage()
        for local in ("copied", "fresh"):
            if f"attention_{local}" not in self.choices:
                self.attention_stage(local)
            best, table = self.local_weight_on_validation(f"attention_{local}")
            self.choices[f"attention_{local}"].update(
                local_weight=best, local_weight_curve=table,
                local_weight_at_grid_edge=grid_edges({"local_weight": self.recipe.local_weights}, {"local_weight": best}))
        if "control" not in self.choices:
            self.control()
        self.choices["ours"] = self.our_answer()
        self._save_choices()
        report = {"recipe": dataclasses.asdict(self.recipe), "teachers": TEACHERS, "choices": self.choices,
                  "reference": "control", "populations": {}}
        for population in POPULATIONS:
            faces = self.faces[population]
            errors = {name: outside(age, faces) for name, age in self.answers_on(population).items()}
            entry = {"faces": len(faces), "people": int(len(set(faces.subject.tolist()))),
                     "rows": paired_rows(errors, faces, "control"),
                     "release_addition": paired_rows({k: errors[k] for k in ("teachers_mean", "teachers_and_ours")},
                                                     faces, "teachers_mean")["teachers_and_ours"]}
            if population == "fgnet":
                pred = self.predictions("attention_copied", population)
                by_weight = {f"{w:g}": outside(self._age(combine(pred["global_probs"], pred["local_probs"], w)), faces)
                             for w in self.recipe.local_weights}
                nested, chosen = nested_choice(by_weight, faces.fold)
                errors_nested = dict(errors, combined_copied_nested=nested)
                entry["nested_local_weight"] = chosen
                entry["rows"]["combined_copied_nested"] = paired_rows(errors_nested, faces, "control")[
                    "combined_copied_nested"]
            entry["memory"] = self.memory_study(population)
            report["populations"][population] = entry
            self.log(f"{population}: scored")
        report["box"] = self.box_study()
        return report


def open_study(utkface: str, fgnet: str, fairface: str, fairface_labels: str, teachers: str, faceapi: str,
               root: str, recipe: Recipe, log=print) -> Study:
    """The study on our builds, release v5's networks as teachers and face-api's weights as the start.

    Raises OSError or ValueError naming what is missing or wrong before anything is trained."""
    faces = load_faces(utkface, fgnet, fairface, fairface_labels, recipe.train_limit, recipe.validation_share)
    teacher, identity = v5_teacher(teachers)
    backbone = faceapi_backbone(faceapi)
    log(", ".join(f"{name} {len(f)} faces" for name, f in faces.items()))
    return Study(faces, root, recipe, teacher, identity, backbone, log=log)


def write_report(report: dict, output: str, command: str) -> str:
    """`output`.json and `output`.md, each written atomically; returns the markdown."""
    report = dict(report, command=command)
    text = markdown(report, command)
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    files.write_atomically(output + ".json", json.dumps(report, indent=1) + "\n")
    files.write_atomically(output + ".md", text)
    return text


def _band_table(rows: dict, ours: str) -> str:
    """Per band of the true age: the control's error and each answer's paired difference from it."""
    names = [n for n in ("global", "local_copied", "local_fresh", ours) if n in rows]
    lines = ["| age band | faces | control | " + " | ".join(f"{n} minus control" for n in names) + " |",
             "|---" * (3 + len(names)) + "|"]
    for band, cell in rows["control"].items():
        diffs = [rows[n][band]["minus_reference"] for n in names]
        lines.append(f"| {band} | {cell['faces']} | {cell['error']:.2f} | "
                     + " | ".join(f"{d['mean']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]" for d in diffs) + " |")
    return "\n".join(lines)


def markdown(report: dict, command: str = "") -> str:
    lines = ["# The AL network trained end to end (TinyXception at 112 px), its fair test", "",
             "Errors in years (outside the group for FairFace); 95 % intervals resample people; differences are "
             "paired on the same faces against the equal-step control (the global stage trained on for the "
             "attention stage's steps).", ""]
    g = report["choices"]["global"]
    lines.append(f"Global stage chosen: rate {g['rate']:g}, teacher weight {g['teacher_weight']:g}, "
                 f"{g['epochs']} epochs (validation MAE {g['validation_mae']:.3f}); at a grid's edge: "
                 f"{'; '.join(g['at_grid_edge']) or 'none'}.")
    for local in ("copied", "fresh"):
        a = report["choices"][f"attention_{local}"]
        lines.append(f"Attention stage, local head {local}: rate {a['rate']:g}, {a['epochs']} epochs, local weight "
                     f"{a['local_weight']:g} on validation; at a grid's edge: "
                     f"{'; '.join(a['at_grid_edge'] + a['local_weight_at_grid_edge']) or 'none'}.")
    lines.append("")
    for population, entry in report["populations"].items():
        lines += [f"## {population} ({entry['faces']} faces, {entry['people']} people)", "",
                  "| answer | error [95 %] | minus control [95 %] |", "|---|---|---|"]
        for name, row in entry["rows"].items():
            cell = row["all"]
            diff = cell.get("minus_reference")
            shown = f"{diff['mean']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]" if diff else "reference"
            lines.append(f"| {name} | {cell['error']:.3f} [{cell['low']:.3f}, {cell['high']:.3f}] | {shown} |")
        ours = report["choices"]["ours"]
        added = entry["release_addition"]["all"]["minus_reference"]
        lines += ["", _band_table(entry["rows"], ours), "",
                  f"Ours ({ours}) added to release v5's three networks (the mean of four against their mean): "
                  f"{added['mean']:+.3f} [{added['low']:+.3f}, {added['high']:+.3f}]."]
        m = entry["memory"]
        lines += ["", f"Memory carried over {m['faces']} faces ({m['order']}) minus reset, combined answer: "
                  f"{m['age']['carried_minus_reset']['mean']:+.3f} [{m['age']['carried_minus_reset']['low']:+.3f}, "
                  f"{m['age']['carried_minus_reset']['high']:+.3f}]", ""]
    box = report["box"]
    lines += [f"Box (copied local head, UTKFace held-out): mean {', '.join(f'{v:.3f}' for v in box['movement']['mean_box'])}"
              f"; centre spread {box['movement']['centre_x_std_over_width']:.3f} / "
              f"{box['movement']['centre_y_std_over_height']:.3f} of its size; follows a moved face with slope "
              f"{box['translation']['slope_x']:.3f} (x), {box['translation']['slope_y']:.3f} (y).", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    return "\n".join(lines)
