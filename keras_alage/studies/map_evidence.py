"""The attention branch's fair test on a 7x7 map: face-api's TinyXception at 112 px (imported
exactly, frozen), FG-NET's five subject folds, every choice nested.

Every stage here keeps the backbone frozen (the global head, the local head, the branch), and
faces are seen in the evaluation view and its mirror, so each face's two feature maps are
computed once (`feature_maps`) and the stages train on them with the product's own loop
(`training.loop.Trainer`) and a model built by the same builder on the map
(`age_model.build_map_model`: same layers, same names; `full_model` puts them back on the
backbone for the box study on images). The result equals training the whole model with a
frozen backbone on those two views.

Variants (the 3x3 evidence's, `experiments/attention_evidence_after_global.sh`):
  a         the global head on the imported backbone (the start of all others)
  a2        a's global head trained further (the same extra budget as the branch)
  b2_mean   a local head on a fixed box (d2's mean box, per fold), no LSTM
  b2_whole  a local head on the whole map
  c2        the attention branch without memory
  d2        the attention LSTM branch
b2, c2 and d2 start their local head as a copy of a's global head. Each variant's learning rate
(and d2's box bound) and its number of epochs are chosen per fold on that fold's own held-out
training part (`build.validation_part`: subject-exclusive, never the fold's test people): a run
per setting at a constant rate up to `MAX_EPOCHS`, validated after every epoch, and the lowest
validation MAE picks setting and epoch (`choose`). A choice at the last epoch is reported as at
the grid's edge. Test runs then train on the fold's whole training side with the fold's choice,
for three seeds, and every fold's test faces are scored once per seed.
"""

import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from keras_alage.evaluation import metrics
from keras_alage.models import age_model, attention, faceapi_import, weight_import
from keras_alage.models.age_model import ModelConfig
from keras_alage.studies import reporting
from keras_alage.training import loop
from alage_pipelines import augment, build, files, tfrecords

MAX_EPOCHS = 40
SEEDS = (0, 1, 2)
LEARNING_RATES = {"a": (0.01, 0.03, 0.1), "default": (0.003, 0.01, 0.03)}
D2_BOXES = (0.5, 1.0)
VARIANTS = ("a", "a2", "b2_mean", "b2_whole", "c2", "d2")
STAGE = {"a": "global_head", "a2": "global_head", "b2_mean": "local_head", "b2_whole": "local_head",
         "c2": "attention", "d2": "attention"}
HEADS = ("global", "local", "combined")


def config(max_box_size: float = 1.0) -> ModelConfig:
    return ModelConfig(layout="faceapi", input_size=112, age_classes="utkface", max_box_size=max_box_size)


@dataclasses.dataclass
class Faces:
    """Every face of a build: its two feature maps (evaluation view, mirror), labels, part."""

    maps: np.ndarray  # [n, 2, 7, 7, 512]
    labels: np.ndarray
    ages: np.ndarray
    paths: List[str]
    subjects: List[str]
    parts: np.ndarray
    encoded: List[bytes]

    def where(self, parts: Sequence[str]) -> np.ndarray:
        return np.flatnonzero(np.isin(self.parts, list(parts)))


def feature_maps(build_dir: str, faceapi_source: Optional[str] = None, batch: int = 64) -> Faces:
    """The frozen backbone's maps of every face of `build_dir` (face-api's weights imported)."""
    data = build.Build.open(build_dir, verify=True)
    backbone = age_model.build_age_model(config()).get_layer("backbone")
    faceapi_import.import_faceapi_age(backbone, path=faceapi_source)
    size = config().input_size
    rows = {"maps": [], "labels": [], "ages": [], "paths": [], "subjects": [], "parts": [], "encoded": []}
    for part in sorted(data.manifest["parts"]):
        for example in tf.data.TFRecordDataset(data.part_files([part])).map(tfrecords.parse_example):
            rows["encoded"].append(example["image"].numpy())
            rows["labels"].append(int(example["label"]))
            rows["ages"].append(float(example["age"]))
            rows["paths"].append(example["path"].numpy().decode())
            rows["subjects"].append(example["subject"].numpy().decode())
            rows["parts"].append(part)
    views = []
    for encoded in rows["encoded"]:
        views.append(augment.preprocess_for_eval(augment.decode(encoded), size, "center_flip").numpy())
    views = np.stack(views)  # [n, 2, s, s, 3]
    flat = views.reshape((-1,) + views.shape[2:])
    maps = np.concatenate([backbone(flat[i : i + batch], training=False).numpy() for i in range(0, len(flat), batch)])
    return Faces(maps.reshape(views.shape[:2] + maps.shape[1:]), np.array(rows["labels"]), np.array(rows["ages"]),
                 rows["paths"], rows["subjects"], np.array(rows["parts"]), rows["encoded"])


def map_dataset(faces: Faces, index: np.ndarray, training: bool, batch: int = 32, seed: int = 0):
    """(maps, labels) batches: training draws the view (centre or mirror) at random and repeats;
    evaluation takes the centre view once, in order."""
    maps = faces.maps[index]
    labels = {"label": faces.labels[index].astype(np.int32), "age": faces.ages[index].astype(np.float32),
              "age_std": np.zeros(len(index), np.float32), "path": np.array(faces.paths)[index]}
    if not training:
        return tf.data.Dataset.from_tensor_slices((maps[:, 0], labels)).batch(batch)
    data = tf.data.Dataset.from_tensor_slices((maps, labels)).repeat().shuffle(len(index), seed=seed)

    def one_view(views, label):  # a fresh draw each time a face comes round, fixed by the seed
        return tf.gather(views, tf.random.uniform([], maxval=2, dtype=tf.int32, seed=seed)), label

    return data.map(one_view).batch(batch, drop_remainder=True)


@dataclasses.dataclass(frozen=True)
class Setting:
    learning_rate: float
    max_box_size: float = 1.0

    @property
    def name(self) -> str:
        return f"lr{self.learning_rate:g}-box{self.max_box_size:g}"


def settings_of(variant: str) -> List[Setting]:
    rates = LEARNING_RATES.get(variant, LEARNING_RATES["default"])
    boxes = D2_BOXES if variant == "d2" else (1.0,)
    return [Setting(lr, box) for lr in rates for box in boxes]


def train(run_dir: str, variant: str, setting: Setting, epochs: int, faces: Faces, train_index, start=None,
          fixed_box=None, validation_index=None, seed: int = 0, batch: int = 32):
    """One run on the maps (resumes where it stopped); returns (model, history)."""
    stage = STAGE[variant]
    steps = max(1, len(train_index) // batch)
    train_config = loop.TrainConfig(run_dir=run_dir, stage=stage, epochs=epochs, steps_per_epoch=steps,
                                    batch_size=batch, learning_rate=setting.learning_rate, lr_decay_epochs=(),
                                    momentum=0.9, weight_decay=1e-4, image_summaries=0, seed=seed)

    def build_model():
        model = age_model.build_map_model(config(setting.max_box_size), faces.maps.shape[2:])
        if start is not None:
            for layer in model.layers:
                if layer.name in start:
                    layer.set_weights(start[layer.name])
        if variant in ("b2_mean", "b2_whole", "c2", "d2"):
            weight_import.local_head_from_global(model)
        age_model.set_trained_heads(model, ("global",) if stage == "global_head" else ("global", "local"))
        attention.reset_attention_state(model)
        if fixed_box is not None:
            attention.fix_box(model, fixed_box)
        if variant == "c2":
            attention.freeze_attention_state(model)
        return model

    os.makedirs(run_dir, exist_ok=True)
    trainer = loop.Trainer(build_model, config().classes().values, train_config)
    validation = map_dataset(faces, validation_index, False) if validation_index is not None else None
    history = trainer.fit(map_dataset(faces, train_index, True, batch, seed), validation, verbose=0)
    return trainer.model, history


def weights_of(model) -> Dict[str, list]:
    """Every weighted layer's weights by name (what a later variant starts from)."""
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def choose(curves: Dict[str, Sequence[float]]) -> Tuple[str, int]:
    """(setting, epochs) with the lowest validation MAE over every setting's per-epoch curve of
    one fold (ties: the earlier epoch, then the first setting)."""
    best = min(((value, epoch + 1, name) for name, curve in curves.items() for epoch, value in enumerate(curve)),
               key=lambda item: (item[0], item[1]))
    return best[2], best[1]


def predict(model, faces: Faces, index) -> Dict[str, np.ndarray]:
    outputs = {"global": [], "local": [], "combined": [], "box": []}
    for maps, _ in map_dataset(faces, index, False, batch=128):
        out = model(maps, training=False)
        outputs["global"].append(out["global_age"].numpy())
        outputs["local"].append(out["local_age"].numpy())
        outputs["combined"].append(out["age"].numpy())
        outputs["box"].append(out["box"].numpy())
    return {k: np.concatenate(v) for k, v in outputs.items()}


def full_model(map_model_weights: Dict[str, list], max_box_size: float, faceapi_source=None):
    """The whole network on images: the imported backbone with a map model's heads and branch."""
    model = age_model.build_age_model(config(max_box_size))
    faceapi_import.import_faceapi_age(model.get_layer("backbone"), path=faceapi_source)
    for layer in model.layers:
        if layer.name in map_model_weights and layer.name != "backbone":
            layer.set_weights(map_model_weights[layer.name])
    return model


class Study:
    """The whole comparison on one build, resumable: run folders under `root`, choices in
    `root/choices.json`. `data` is the build (its folds, sides and validation parts), `faces`
    its feature maps."""

    def __init__(self, data, faces: Faces, root: str, faceapi_source=None, log=print):
        self.data, self.faces = data, faces
        self.root, self.faceapi_source, self.log = root, faceapi_source, log
        self.choices: Dict[str, Dict[str, dict]] = {}

    @classmethod
    def from_build(cls, build_dir: str, root: str, faceapi_source=None, log=print) -> "Study":
        return cls(build.Build.open(build_dir, verify=True), feature_maps(build_dir, faceapi_source), root,
                   faceapi_source, log)

    def sides(self, fold: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(inner training, inner validation, test) indices of a fold."""
        sides = self.data.sides(fold)
        held_out = self.data.validation_part(fold)
        inner = [p for p in sides["train"] if p != held_out]
        return self.faces.where(inner), self.faces.where([held_out]), self.faces.where(sides["test"])

    def choose_variant(self, variant: str, fold: str, start=None, fixed_box=None) -> dict:
        """The fold's nested choice for a variant, from validation runs on its own held-out part."""
        inner, held_out, _ = self.sides(fold)
        curves, models = {}, {}
        for setting in settings_of(variant):
            run_dir = os.path.join(self.root, "validation", variant, setting.name, fold)
            model, history = train(run_dir, variant, setting, MAX_EPOCHS, self.faces, inner, start, fixed_box,
                                   validation_index=held_out)
            curves[setting.name] = [h["val_combined_mae"] for h in history]
            models[setting.name] = model
        name, epochs = choose(curves)
        setting = next(s for s in settings_of(variant) if s.name == name)
        choice = {"setting": dataclasses.asdict(setting), "epochs": epochs, "at_grid_edge": epochs == MAX_EPOCHS,
                  "validation_mae": curves[name][epochs - 1], "validation_part": self.data.validation_part(fold),
                  "curves": curves}
        self.choices.setdefault(variant, {})[fold] = choice
        return choice | {"model": models[name]}

    def test_run(self, variant: str, fold: str, seed: int, start=None, fixed_box=None):
        choice = self.choices[variant][fold]
        setting = Setting(**choice["setting"])
        train_index = np.concatenate(self.sides(fold)[:2])
        run_dir = os.path.join(self.root, "test", variant, f"seed{seed}", fold)
        model, _ = train(run_dir, variant, setting, choice["epochs"], self.faces, train_index, start, fixed_box,
                         seed=seed)
        return model

    def run(self, folds: Optional[Sequence[str]] = None) -> dict:
        folds = list(folds or self.data.folds)
        scored: Dict[str, Dict[int, Dict[str, dict]]] = {v: {s: {} for s in SEEDS} for v in VARIANTS}
        boxes: Dict[str, list] = {"d2": [], "c2": []}
        translation: Dict[str, list] = {"d2": [], "c2": []}
        for fold in folds:
            _, _, test = self.sides(fold)
            a_val = self.choose_variant("a", fold)["model"]  # validation start of every other variant
            start_val = weights_of(a_val)
            d2 = self.choose_variant("d2", fold, start_val)
            _, held_out, _ = self.sides(fold)
            mean_box = predict(d2["model"], self.faces, held_out)["box"].mean(axis=0)
            self.choices["d2"][fold]["mean_box_on_validation"] = [float(v) for v in mean_box]
            fixed = {"b2_mean": tuple(float(v) for v in mean_box), "b2_whole": attention.WHOLE_MAP}
            for variant in ("a2", "b2_mean", "b2_whole", "c2"):
                self.choose_variant(variant, fold, start_val, fixed.get(variant))
            self._save_choices()
            for seed in SEEDS:
                a_test = self.test_run("a", fold, seed)
                start = weights_of(a_test)
                scored["a"][seed][fold] = predict(a_test, self.faces, test)
                for variant in ("a2", "b2_mean", "b2_whole", "c2", "d2"):
                    model = self.test_run(variant, fold, seed, start, fixed.get(variant))
                    scored[variant][seed][fold] = predict(model, self.faces, test)
                    if seed == 0 and variant in boxes:
                        boxes[variant].append(scored[variant][seed][fold]["box"])
                        box_bound = self.choices[variant][fold]["setting"]["max_box_size"]
                        whole = full_model(weights_of(model), box_bound, self.faceapi_source)
                        attention.freeze_attention_state(whole)
                        faces_ = [self.faces.encoded[i] for i in test[:40]]
                        translation[variant].append(reporting.translation_response(whole, faces_, 112))
            self.log(f"{fold}: done")
        return self.report(folds, scored, boxes, translation)

    def _save_choices(self) -> None:
        path = os.path.join(self.root, "choices.json")
        files.write_atomically(path, json.dumps(self.choices, indent=1, sort_keys=True) + "\n")

    def report(self, folds, scored, boxes, translation) -> dict:
        test = np.concatenate([self.sides(f)[2] for f in folds])
        truth, subjects = self.faces.ages[test], np.array(self.faces.subjects)[test]
        errors = {}
        for variant in VARIANTS:
            per_seed = []
            for seed in SEEDS:
                predicted = {h: np.concatenate([scored[variant][seed][f][h] for f in folds]) for h in HEADS}
                per_seed.append({h: np.abs(predicted[h] - truth) for h in HEADS})
            errors[variant] = {h: np.mean([s[h] for s in per_seed], axis=0) for h in HEADS}
            errors[variant]["per_seed"] = [{h: float(s[h].mean()) for h in HEADS} for s in per_seed]
        reference = errors["a2"]["combined"]
        result = {"folds": folds, "faces": int(len(test)), "seeds": list(SEEDS), "max_epochs": MAX_EPOCHS,
                  "variants": {}, "choices": self.choices}
        for variant in VARIANTS:
            row = {"per_seed_mae": errors[variant]["per_seed"], "heads": {}}
            for head in HEADS:
                mean, low, high = metrics.subject_bootstrap(errors[variant][head], subjects)
                row["heads"][head] = {"mae": mean, "mae_low": low, "mae_high": high}
            mean, low, high = metrics.subject_bootstrap(errors[variant]["combined"] - reference, subjects)
            row["combined_minus_a2"] = {"mean": mean, "low": low, "high": high}
            if STAGE[variant] != "global_head":  # the local head alone against the same reference
                mean, low, high = metrics.subject_bootstrap(errors[variant]["local"] - reference, subjects)
                row["local_minus_a2"] = {"mean": mean, "low": low, "high": high}
            edges = [self.choices[variant][f]["at_grid_edge"] for f in folds]
            row["choices_at_grid_edge"] = int(sum(edges))
            result["variants"][variant] = row
        for variant in boxes:
            result["variants"][variant]["boxes"] = reporting.box_movement(np.concatenate(boxes[variant]))
            result["variants"][variant]["translation_slope"] = {
                axis: float(np.mean([t[f"slope_{axis}"] for t in translation[variant]])) for axis in ("x", "y")}
        return result


def markdown(result: dict, command: str) -> str:
    lines = [f"# The attention branch on a 7x7 map: face-api's TinyXception at 112 px, FG-NET "
             f"({result['faces']} test faces, {len(result['folds'])} subject folds, {len(result['seeds'])} seeds)", "",
             "MAE of each head, errors averaged over seeds per face, 95 % intervals from resampling people. "
             "Every setting and epoch count was chosen per fold on that fold's own held-out training part.", "",
             "| variant | global | local | combined | combined - a2 | local - a2 | choices at the grid's edge |",
             "|---|---|---|---|---|---|---|"]
    for name, row in result["variants"].items():
        cells = [f"{row['heads'][h]['mae']:.3f} [{row['heads'][h]['mae_low']:.3f}, {row['heads'][h]['mae_high']:.3f}]"
                 for h in HEADS]
        diffs = [row.get(key) for key in ("combined_minus_a2", "local_minus_a2")]
        shown = [f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]" if d else "-" for d in diffs]
        lines.append(f"| {name} | " + " | ".join(cells + shown)
                     + f" | {row['choices_at_grid_edge']} of {len(result['folds'])} |")
    lines.append("")
    for name in ("d2", "c2"):
        row = result["variants"][name]
        if "boxes" in row:
            b = row["boxes"]
            lines.append(f"- {name}'s box: mean {', '.join(f'{v:.3f}' for v in b['mean_box'])} (x, y, w, h of the "
                         f"input); its centre moves {b['centre_x_std_over_width']:.3f} / "
                         f"{b['centre_y_std_over_height']:.3f} of its width / height between faces; translation "
                         f"slope x {row['translation_slope']['x']:.3f}, y {row['translation_slope']['y']:.3f} "
                         "(1 follows a moved face, 0 stays).")
    lines += ["", f"Command: `{command}`", ""]
    return "\n".join(lines)
