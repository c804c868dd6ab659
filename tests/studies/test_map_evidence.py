"""The 7x7 evidence's machinery: training on cached maps is training the whole model with a frozen
backbone, the local head starts from the global head, and every choice is nested (a fold's test
people never choose its settings)."""

import numpy as np
import pytest
import tensorflow as tf

from keras_alage.models import age_model, attention
from keras_alage.studies import map_evidence
from keras_alage.training import loop

MAP = (7, 7, 8)  # a narrow map keeps the tests fast; the study's is 7x7x512


class FakeBuild:
    """Five subject parts; fold k tests on part k and holds part k+1 out for validation."""

    folds = [f"fold{k}" for k in range(5)]

    def sides(self, fold):
        k = int(fold[-1])
        return {"test": [f"p{k}"], "train": [f"p{j}" for j in range(5) if j != k]}

    def validation_part(self, fold):
        return f"p{(int(fold[-1]) + 1) % 5}"


def fake_faces(count=150, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 101, count)
    maps = rng.normal(0, 1, (count, 2) + MAP).astype(np.float32) + (labels / 50.0)[:, None, None, None, None]
    return map_evidence.Faces(maps, labels, labels.astype(float), [f"f{i}.jpg" for i in range(count)],
                              [f"s{i // 3}" for i in range(count)], np.array([f"p{(i // 3) % 5}" for i in range(count)]),
                              [b""] * count)


@pytest.fixture
def small_grid(monkeypatch):
    monkeypatch.setattr(map_evidence, "MAX_EPOCHS", 3)
    monkeypatch.setattr(map_evidence, "LEARNING_RATES", {"a": (0.01, 0.1), "default": (0.01, 0.1)})
    monkeypatch.setattr(map_evidence, "config", lambda max_box_size=1.0: age_model.ModelConfig(
        layout="faceapi", input_size=112, age_classes="utkface", max_box_size=max_box_size, lstm_units=8))


def test_choose_takes_the_lowest_validation_point_and_the_earlier_epoch_on_ties():
    curves = {"lr0.01": [5.0, 4.0, 4.5], "lr0.1": [4.2, 4.0, 3.9]}
    assert map_evidence.choose(curves) == ("lr0.1", 3)
    assert map_evidence.choose({"x": [3.0, 2.0, 2.0], "y": [2.0, 2.5, 2.5]}) == ("y", 1)


def test_a_folds_settings_never_read_its_test_people(small_grid, tmp_path, monkeypatch):
    seen = []
    original = map_evidence.train

    def spy(run_dir, variant, setting, epochs, faces, train_index, start=None, fixed_box=None,
            validation_index=None, **kwargs):
        seen.append((set(train_index.tolist()), set(validation_index.tolist())))
        return original(run_dir, variant, setting, epochs, faces, train_index, start, fixed_box,
                        validation_index=validation_index, **kwargs)

    monkeypatch.setattr(map_evidence, "train", spy)
    faces = fake_faces()
    study = map_evidence.Study(FakeBuild(), faces, str(tmp_path / "a"), log=lambda _: None)
    choice = study.choose_variant("a2", "fold2")
    test = set(faces.where(["p2"]).tolist())
    assert seen and all(not (t & test) and not (v & test) and not (t & v) for t, v in seen)
    assert all(v == set(faces.where(["p3"]).tolist()) for _, v in seen)
    # The leak, made on purpose: scrambling the test people's labels changes nothing chosen.
    leaked = fake_faces()
    leaked.labels[list(test)] = 0
    again = map_evidence.Study(FakeBuild(), leaked, str(tmp_path / "b"), log=lambda _: None).choose_variant("a2", "fold2")
    assert again["curves"] == choice["curves"] and again["epochs"] == choice["epochs"]
    # ...while scrambling its validation people's labels does move the curves.
    held_out = fake_faces()
    held_out.labels[faces.where(["p3"])] = 0
    moved = map_evidence.Study(FakeBuild(), held_out, str(tmp_path / "c"), log=lambda _: None).choose_variant("a2", "fold2")
    assert moved["curves"] != choice["curves"]
    assert choice["at_grid_edge"] == (choice["epochs"] == map_evidence.MAX_EPOCHS)


def test_the_branch_starts_from_the_global_head(small_grid, tmp_path):
    faces = fake_faces()
    start_model = age_model.build_map_model(map_evidence.config(), MAP)
    start = map_evidence.weights_of(start_model)
    model, _ = map_evidence.train(str(tmp_path / "d2"), "d2", map_evidence.Setting(0.01), 0, faces,
                                  faces.where(["p0", "p1"]), start)
    for mine, global_ in zip(model.get_layer("local_head").get_weights(), start["global_head"]):
        np.testing.assert_array_equal(mine, global_)
    assert not np.array_equal(start["local_head"][0], start["global_head"][0])  # a real copy, not a coincidence


def test_training_on_maps_is_training_the_whole_model_with_a_frozen_backbone(small_grid, tmp_path):
    """One attention-stage step on the map model and on the full model (same weights, the same
    images' maps) leaves the branch with the same weights."""
    full = age_model.build_age_model(map_evidence.config())
    rng = np.random.default_rng(0)
    images = rng.normal(0, 1, (4, 112, 112, 3)).astype(np.float32)
    maps = full.get_layer("backbone")(images).numpy()
    map_model = age_model.build_map_model(map_evidence.config(), maps.shape[1:])
    for layer in map_model.layers:
        if layer.weights and layer.name != "backbone":
            layer.set_weights(full.get_layer(layer.name).get_weights())
    labels = {"label": np.array([3, 40, 70, 20], np.int32)}
    after = []
    for model, inputs in ((full, images), (map_model, maps)):
        cfg = loop.TrainConfig(run_dir=str(tmp_path / model.name), stage="attention", epochs=1, steps_per_epoch=1,
                               batch_size=4, learning_rate=0.1, lr_decay_epochs=(), image_summaries=0)
        trainer = loop.Trainer(lambda m=model: m, range(101), cfg)
        attention.reset_attention_state(trainer.model)
        data = tf.data.Dataset.from_tensors((inputs, labels | {"age": labels["label"].astype(np.float32),
                                                               "age_std": np.zeros(4, np.float32),
                                                               "path": np.array([b"a", b"b", b"c", b"d"])})).repeat()
        trainer.fit(data, verbose=0)
        after.append({n: [w.copy() for w in trainer.model.get_layer(n).get_weights()]
                      for n in ("local_head", "attention_lstm", "global_head")})
    for name in after[0]:
        for a, b in zip(after[0][name], after[1][name]):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)
