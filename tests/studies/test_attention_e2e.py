"""The end-to-end AL study (issue 35) on a tiny TinyXception (48 px) and a few synthetic faces."""

import json
import os

import cv2
import numpy as np
import pytest

from keras_alage.models import attention
from keras_alage.studies import attention_e2e as e2e

pytestmark = pytest.mark.slow  # every case reads the module's study: two tiny trainings (about 80 s busy)

RECIPE = e2e.Recipe(input_size=48, batch_size=4, teacher_weights=(0.0, 1.0), global_rates=(0.001, 0.01),
                    global_epochs=2, global_decay_epoch=1, epoch_faces=8, attention_rates=(0.01, 0.03), attention_epochs=2, local_weights=(0.0, 0.5, 1.0),
                    memory_limit=6, translation_faces=3)


def synthetic(count, seed, fold_count=0, grouped=False):
    rng = np.random.default_rng(seed)
    encoded, ages = [], rng.uniform(5, 60, count).round()
    for age in ages:  # brightness says the age, so there is something to learn
        image = np.clip(rng.normal(age * 3, 20, (64, 64, 3)), 0, 255).astype(np.uint8)
        encoded.append(cv2.imencode(".jpg", image)[1].tobytes())
    low, high = (ages - 3, ages + 4) if grouped else (ages, ages)
    paths = np.array([f"p{seed}_{i:03d}.jpg" for i in range(count)])
    subjects = np.array([f"s{i % max(2, count // 2)}" for i in range(count)])
    fold = np.array([f"fold{i % fold_count}" for i in range(count)]) if fold_count else None
    return e2e.Faces(encoded, ages, low, high, subjects, paths, fold)


def teacher(encoded):
    ages = np.array([float(np.asarray(cv2.imdecode(np.frombuffer(e, np.uint8), 1)).mean()) / 3 for e in encoded])
    return {"al": ages + 1, "faceapi": ages - 1, "faceres": ages + 3}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    faces = {"train": synthetic(16, 0), "validation": synthetic(8, 1), "utkface": synthetic(8, 2),
             "fgnet": synthetic(10, 3, fold_count=5), "fairface": synthetic(6, 4, grouped=True)}
    made = e2e.Study(faces, str(root), RECIPE, teacher, "stand-in", init_backbone=lambda model: None,
                     log=lambda *_: None)
    return made, made.run()


def test_the_smoke_run_scores_every_answer_on_every_population(study):
    _, report = study
    expected = {"global", "local_copied", "combined_copied", "combined_copied_chosen", "local_fresh",
                "combined_fresh", "combined_fresh_chosen", "control", "teacher_al", "teacher_faceapi",
                "teacher_faceres", "teachers_mean"}
    for name, entry in report["populations"].items():
        assert expected <= set(entry["rows"]), name
        assert "minus_reference" not in entry["rows"]["control"]["all"]
        assert "minus_reference" in entry["rows"]["global"]["all"]
        assert entry["memory"]["faces"] == min(6, entry["faces"])
    assert "combined_copied_nested" in report["populations"]["fgnet"]["rows"]
    assert set(report["populations"]["fgnet"]["nested_local_weight"]) == {f"fold{i}" for i in range(5)}
    assert set(report["box"]["translation"]) >= {"slope_x", "slope_y"}
    assert e2e.markdown(report).startswith("# The AL network")


def test_our_answer_is_chosen_on_validation_and_scored_beside_the_teachers(study):
    """The candidate member is the combined answer whose validation error is lower, and the
    release addition is the teachers' mean with it as a fourth, paired against their mean."""
    made, report = study
    curves = {n: min(report["choices"][f"attention_{n}"]["local_weight_curve"].values()) for n in ("copied", "fresh")}
    assert report["choices"]["ours"] == f"combined_{min(curves, key=curves.get)}_chosen"
    ages = made.answers_on("fairface")
    teachers = [ages[f"teacher_{n}"] for n in e2e.TEACHERS]
    np.testing.assert_allclose(ages["teachers_and_ours"], np.mean(teachers + [ages[report["choices"]["ours"]]], axis=0))
    added = report["populations"]["fairface"]["release_addition"]["all"]
    faces = made.faces["fairface"]
    expected = (e2e.outside(ages["teachers_and_ours"], faces) - e2e.outside(ages["teachers_mean"], faces)).mean()
    assert added["minus_reference"]["mean"] == pytest.approx(expected, abs=1e-9)


def test_the_report_is_written_as_json_and_markdown(study, tmp_path):
    _, report = study
    text = e2e.write_report(report, str(tmp_path / "out" / "e2e"), "python experiments/attention_e2e.py --smoke")
    written = json.load(open(tmp_path / "out" / "e2e.json"))
    assert written["command"].endswith("--smoke") and set(written["populations"]) == set(e2e.POPULATIONS)
    assert (tmp_path / "out" / "e2e.md").read_text() == text and "--smoke" in text
    assert "| age band |" in text and "added to release v5's three networks" in text


def test_the_control_trains_the_global_stage_for_the_attention_stages_steps(study):
    made, report = study
    choices = report["choices"]
    assert choices["control"]["steps"] == choices["attention_copied"]["steps"]
    assert choices["control"]["teacher_weight"] == choices["global"]["teacher_weight"]
    history = [json.loads(line) for line in open(os.path.join(made.root, "control", "history.jsonl"))]
    assert len(history) * made._steps() == choices["attention_copied"]["steps"]
    # the control goes on at the rate the chosen global epoch trained at: after the step, a tenth
    decayed = choices["global"]["epochs"] > RECIPE.global_decay_epoch
    expected = choices["global"]["rate"] * (0.1 if decayed else 1.0)
    assert choices["control"]["rate"] == pytest.approx(expected)
    assert [h["learning_rate"] for h in history] == pytest.approx([expected] * len(history))


def test_the_global_stage_steps_its_rate_down_and_draws_epoch_faces_per_epoch(study):
    made, report = study
    assert made._steps() == 8 // RECIPE.batch_size  # epoch_faces, not the 16 training faces
    run = os.path.join(made.root, "global", report["choices"]["global"]["run"])
    rates = [json.loads(line)["learning_rate"] for line in open(os.path.join(run, "history.jsonl"))]
    assert rates == pytest.approx([report["choices"]["global"]["rate"], report["choices"]["global"]["rate"] * 0.1])


def test_the_combined_answer_uses_the_converged_global_head(study):
    """The attention stage starts from the chosen global epoch and freezes it: its global head
    answers exactly as the converged model's, not as a stale start or the control's."""
    made, report = study
    converged = made._model(report["choices"]["global"]["weights"])
    images = next(iter(e2e.eval_images(made.faces["utkface"], RECIPE.input_size)))
    expected = converged(images, training=False)["global_probs"].numpy()
    for local in ("copied", "fresh"):
        attended = made.predictions(f"attention_{local}", "utkface")["global_probs"][: len(expected)]
        np.testing.assert_allclose(attended, expected, atol=1e-5)
    control = made.predictions("control", "utkface")["global_probs"][: len(expected)]
    assert np.abs(control - expected).max() > 1e-6


def test_local_heads_start_copied_and_fresh_and_the_box_is_movable(study):
    made, report = study
    model = made._model(report["choices"]["global"]["weights"])
    assert isinstance(model.get_layer("attention_box"), attention.MovableBox)
    for local in ("copied", "fresh"):
        run = os.path.join(made.root, f"attention_{local}", report["choices"][f"attention_{local}"]["run"])
        assert os.path.exists(os.path.join(run, "model.keras"))


def test_a_rerun_resumes_without_training_again(study, tmp_path):
    made, report = study
    stamps = {os.path.join(d, f): os.path.getmtime(os.path.join(d, f))
              for d, _, names in os.walk(made.root) for f in names if f.endswith(".weights.h5") or f == "history.jsonl"}
    again = e2e.Study(made.faces, made.root, RECIPE, lambda e: pytest.fail("teachers asked again"), "stand-in",
                      init_backbone=lambda model: None, log=lambda *_: None)
    assert again.choices["global"] == report["choices"]["global"]
    again_report = again.run()
    for path, stamp in stamps.items():
        if not path.endswith(os.path.join("control", "final.weights.h5")):
            assert os.path.getmtime(path) == stamp, path
    assert again_report["populations"]["utkface"]["rows"]["global"] == report["populations"]["utkface"]["rows"]["global"]


def test_a_diverged_setting_is_never_chosen():
    curves = {"a": [float("nan"), float("inf")], "b": [9.0, 8.0], "c": [8.0, 9.0]}
    assert e2e.choose_epoch(curves) == ("c", 1, 8.0)
    assert e2e.choose_epoch({"a": [float("nan"), 7.0], "b": [7.0]}) == ("b", 1, 7.0)


def test_grid_edges_are_reported():
    assert e2e.grid_edges({"rate": (0.01, 0.03, 0.1)}, {"rate": 0.03}) == []
    assert e2e.grid_edges({"rate": (0.01, 0.03, 0.1)}, {"rate": 0.1}) == [
        "rate=0.1 at the high edge of [0.01, 0.03, 0.1]"]
    assert "low edge" in e2e.grid_edges({"rate": (0.1, 0.01)}, {"rate": 0.01})[0]
    assert e2e.grid_edges({"w": (1.0,)}, {"w": 1.0}) == []  # a grid of one value has no inside
    assert e2e.grid_edges({}, {}, epochs=5, max_epochs=5) == ["epochs=5: the last epoch run"]


def test_the_nested_choice_never_reads_the_fold_it_scores():
    """Setting "a" is best on fold f0's own faces' complement and worst on f0 itself: a nested choice
    for f0 takes "a" (chosen on f1 and f2) and scores its errors there; reading f0 would take "b"."""
    folds = np.repeat(["f0", "f1", "f2"], 4)
    errors = {"a": np.where(folds == "f0", 2.0, 0.1), "b": np.full(12, 0.5)}
    nested, chosen = e2e.nested_choice(errors, folds)
    assert chosen["f0"] == "a"  # on f1 and f2: a 0.1, b 0.5
    np.testing.assert_allclose(nested[folds == "f0"], 2.0)
    assert chosen["f1"] == "b"  # on f0 and f2: a 1.05, b 0.5
    np.testing.assert_allclose(nested[folds == "f1"], 0.5)


def test_teacher_answers_are_cached_with_their_provenance(tmp_path):
    faces = synthetic(5, 7)
    calls = []

    def counting(encoded):
        calls.append(len(encoded))
        return teacher(encoded)

    cache = str(tmp_path / "teachers" / "pop.npz")
    first = e2e.teacher_answers(faces, counting, "w1", cache, batch=2)
    assert calls == [2, 2, 1]
    again = e2e.teacher_answers(faces, counting, "w1", cache)
    assert calls == [2, 2, 1] and all(np.array_equal(first[k], again[k]) for k in e2e.TEACHERS)
    e2e.teacher_answers(faces, counting, "other weights", cache)
    assert len(calls) == 4  # other weights: answered again
    provenance = json.load(open(tmp_path / "teachers" / "pop.json"))
    assert set(provenance["teachers"]) == {"al", "faceapi", "faceres"} and "IMDB-WIKI" in provenance["teachers"]["faceres"]["seen"]
    # killed after 2 batches: the rerun asks only for the faces not yet answered
    cache = str(tmp_path / "teachers" / "killed.npz")

    def dying(encoded):
        if len(calls) == 6:
            raise KeyboardInterrupt
        return counting(encoded)

    with pytest.raises(KeyboardInterrupt):
        e2e.teacher_answers(faces, dying, "w1", cache, batch=2, save_every=1)
    resumed = e2e.teacher_answers(faces, counting, "w1", cache, batch=2, save_every=1)
    assert calls[6:] == [1] and not os.path.exists(cache + ".partial.npz")
    assert all(np.allclose(resumed[k], first[k]) for k in e2e.TEACHERS)
    targets = e2e.teacher_targets(first, np.arange(101.0), 3.0)
    np.testing.assert_allclose(targets @ np.arange(101.0), np.mean([first[k] for k in e2e.TEACHERS], axis=0), atol=0.05)
