"""Released models, the rule that only trained heads answer, and the face crop a model records."""

import csv
import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_alage.models import age_model, attention, dlib_import, release
from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.serving import export, outputs, photos
from keras_alage.studies.releases import al_choice
from keras_alage.training import configs, fold_runs, stages
from alage_pipelines import faces, images
from alage_pipelines.images import IMAGENET_MEAN, IMAGENET_STD

REPO = pathlib.Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "astronaut_eileen_collins.jpg"
TINY = ModelConfig(depth=18, input_size=64, age_classes="utkface")


def tiny_model(heads=("global", "local")):
    model = build_age_model(TINY)
    age_model.set_trained_heads(model, heads)
    attention.freeze_attention_state(model)
    return model


def probe(size=64, n=4):
    return np.random.default_rng(0).normal(0, 1, (n, size, size, 3)).astype(np.float32)


@pytest.mark.slow
def test_release_round_trip_keeps_answers_heads_and_crop(tmp_path):
    model = tiny_model()
    crop = faces.CropSpec(256, 0.04)
    digest = release.save(model, str(tmp_path / "r"), TINY, crop, {"terms": "research"})
    loaded, loaded_crop, description = release.load(str(tmp_path / "r"))
    assert loaded_crop == crop and description["weights"]["sha256"] == digest
    assert age_model.trained_heads(loaded) == ("global", "local")
    assert attention.carried_state_layers(loaded)[0].state_frozen
    rounded = tiny_model()  # the same model with its weights rounded to float16: what a release stores
    rounded.set_weights([w.astype(np.float16).astype(w.dtype) for w in model.get_weights()])
    np.testing.assert_allclose(loaded(probe())["age"].numpy(), rounded(probe())["age"].numpy(), atol=1e-3, rtol=0)
    weights = (tmp_path / "r" / "weights.npz").stat().st_size
    assert weights < 0.6 * 4 * model.count_params()  # float16, compressed


@pytest.mark.slow
def test_damaged_weights_are_refused(tmp_path):
    release.save(tiny_model(), str(tmp_path / "r"), TINY, None, {})
    path = tmp_path / "r" / "weights.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256 differs"):
        release.load(str(tmp_path / "r"))
    with pytest.raises(FileNotFoundError, match="not a released model"):
        release.load(str(tmp_path))


def test_a_global_stage_model_answers_with_its_global_head_only():
    model = tiny_model(("global",))
    outputs = model(probe())
    np.testing.assert_array_equal(outputs["age"].numpy(), outputs["global_age"].numpy())
    served = export.AgeServer(model, "center").serve_preprocessed(probe())
    assert np.isnan(served["local_age"].numpy()).all() and np.isnan(served["box"].numpy()).all()
    np.testing.assert_allclose(served["age"].numpy(), outputs["global_age"].numpy(), atol=1e-3, rtol=0)
    both = tiny_model()
    both.set_weights(model.get_weights())
    combined = both(probe())
    assert np.abs(combined["age"].numpy() - combined["global_age"].numpy()).max() > 1e-3


def test_trained_heads_survive_a_keras_save(tmp_path):
    model = tiny_model(("global",))
    model.save(tmp_path / "m.keras")
    assert age_model.trained_heads(keras.models.load_model(tmp_path / "m.keras")) == ("global",)


@pytest.mark.slow
def test_each_stage_records_its_heads_and_the_attention_stage_starts_with_empty_memory(tmp_path):
    source = tiny_model()
    lstm = attention.carried_state_layers(source)[0]
    lstm.hidden_state.assign(np.ones((1, lstm.units), np.float32))
    source.save(tmp_path / "start.keras")
    spec = fold_runs.RunSpec(data_dir=str(tmp_path), model=TINY,
                             start=configs.StartConfig(init_checkpoint=str(tmp_path / "start.keras")))
    for stage, heads in (("global", ("global",)), ("attention", ("global", "local"))):
        model = fold_runs._model_builder(spec, "fold0", lambda *_: None, stage=stage)()
        assert age_model.trained_heads(model) == heads == stages.heads_trained_by(stage)
    assert np.abs(attention.carried_state_layers(model)[0].hidden_state.numpy()).max() == 0.0


def test_a_model_path_is_opened_once_with_its_crop_whatever_its_kind(tmp_path):
    crop = faces.CropSpec(200, 0.04)
    release.save(tiny_model(), str(tmp_path / "release"), TINY, crop, {}, crops="center_flip")
    opened = release.open_model_path(str(tmp_path / "release"))
    assert (opened.kind, opened.face_crop, opened.crops, opened.prior) == ("release", crop, "center_flip", None)
    assert faces.recorded_crop(opened.description) == crop and faces.recorded_crop({"face_crop": None}) is None
    faces.write_crop_spec(str(tmp_path / "run"), crop)
    (tmp_path / "run" / "model.keras").write_bytes(b"")
    opened = release.open_model_path(str(tmp_path / "run" / "model.keras"))
    assert (opened.kind, opened.face_crop, opened.crops) == ("keras", crop, None)
    faces.write_crop_spec(str(tmp_path / "saved" / "assets.extra"), crop)
    (tmp_path / "saved" / release.SAVED_MODEL).write_bytes(b"")
    opened = release.open_model_path(str(tmp_path / "saved"))
    assert (opened.kind, opened.face_crop) == ("saved_model", crop)
    (tmp_path / "bare.keras").write_bytes(b"")
    assert release.open_model_path(str(tmp_path / "bare.keras")).face_crop is None
    with pytest.raises(FileNotFoundError):
        release.open_model_path(str(tmp_path / "missing"))


@pytest.fixture(scope="module")
def released():
    if not release.is_release(release.default_path()):
        pytest.skip(f"no released model at {release.default_path()}")
    return release.default_path()


@pytest.mark.slow
def test_the_released_model_cuts_like_its_training_chips_and_answers_a_real_photo(released):
    pytest.importorskip("dlib", reason="the released model's detector is dlib's (a dependency of keras-alage)")
    predict = photos.load_predictor(released)
    assert predict.face_crop == faces.CropSpec(256, 0.6, detector="dlib")
    assert release.recorded_crops(released) == "center"  # chosen on validation (v5.1)
    detector = faces.make_detector(predict.face_crop.detector)
    result = photos.answer_photo(str(SAMPLE), photos.Answerer(predict, detector, predict.face_crop))
    assert result.error is None and len(result.faces) == 1
    face = result.faces[0]
    # Eileen Collins, photographed in her astronaut years (aged about 36-49): a sensible answer.
    assert 28.0 <= face.age <= 58.0, face.age
    assert face.local_age is not None and face.attention is not None


@pytest.mark.slow
def test_predict_script_uses_the_released_model_by_default(released, tmp_path):
    output = tmp_path / "ages.csv"
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "predict.py"), str(SAMPLE), f"--output={output}"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "face crop: blazeface box, size 256, margin 0.6" in run.stdout  # dlib's crop, cut from BlazeFace's keypoints
    rows = list(csv.DictReader(output.open()))
    assert len(rows) == 1 and 28.0 <= float(rows[0]["age"]) <= 58.0
    # The default release answers with three networks, combined as it records, and a calibrated interval.
    row = rows[0]
    assert float(row["age_low"]) < float(row["age"]) < float(row["age_high"])
    combination = release.read_description(release.default_path())["combination"]
    members = [float(row[key]) for key in ("global_age", "faceapi_age", "faceres_age")]
    shifts = [v for sex in combination.get("shifts") or [[0.0]] for v in sex]
    assert combination["rule"] == "mean" and combination["members"] == ["al", "faceapi", "faceres"]
    assert min(shifts) - 0.02 <= float(row["age"]) - sum(members) / 3 <= max(shifts) + 0.02
    # Its prior shift is refused in one line: it would move one network's distribution only.
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "predict.py"), str(SAMPLE), "--adapt_prior"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert run.returncode != 0 and "records no training prior" in run.stderr and "Traceback" not in run.stderr
    # v3.1 records its prior; one face is too few to estimate a population's.
    v3 = str(REPO / "models" / "al_dlib_resnet_utkface")
    assert release.recorded_prior(v3)["smoothing"] > 0
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "predict.py"), str(SAMPLE), f"--model={v3}",
                          "--overwrite", f"--output={output}"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    alone = list(csv.DictReader(output.open()))[0]["age"]
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "predict.py"), str(SAMPLE), "--adapt_prior", "--overwrite",
                          f"--model={v3}", f"--output={output}"], capture_output=True, text=True, cwd=tmp_path,
                         timeout=300)
    assert run.returncode == 0 and "1 faces are too few to estimate their age prior" in run.stdout, run.stderr[-2000:]
    assert list(csv.DictReader(output.open()))[0]["age"] == alone


@pytest.mark.slow
def test_the_released_global_head_is_dlibs_network_on_dlibs_chip(released):
    """The release's backbone and global head are dlib's CC0 age network, imported exactly and
    stored in fp16: on dlib's own 64 px face chip it answers what onnxruntime answers."""
    pytest.importorskip("dlib", reason="dlib's detector (a dependency of keras-alage)")
    ort = pytest.importorskip("onnxruntime", reason="the 'serving' extra")

    try:
        onnx_path = dlib_import.find_onnx()
        faces.find_landmark_model()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    photo = images.read_image(str(SAMPLE))
    face = max(faces.detect_at(photo, faces.DlibDetector(), faces.UPRIGHT), key=lambda f: f.size[0])
    chip = faces.crop_face(photo, face, faces.CropSpec(64, 0.4, detector="dlib")).astype(np.float32)[None]
    session = ort.InferenceSession(dlib_import._onnx_bytes(onnx_path), providers=["CPUExecutionProvider"])
    inputs = ((chip - dlib_import.DLIB_MEANS) / dlib_import.DLIB_SCALE).transpose(0, 3, 1, 2)
    dlib_age = float(session.run(["probabilities"], {"images": inputs})[0][0] @ np.asarray(dlib_import.DLIB_AGES))
    model, _, _ = release.load(released)
    ours = float(model((chip / 255.0 - IMAGENET_MEAN) / IMAGENET_STD, training=False)["global_age"][0])
    assert ours == pytest.approx(dlib_age, abs=0.1)  # fp16 weights; class 0 is age 0 where dlib's is 0.25


@pytest.mark.slow
def test_a_release_predicts_with_the_crops_it_records(tmp_path):
    model = tiny_model()
    release.save(model, str(tmp_path / "r"), TINY, faces.CropSpec(256, 0.6, detector="dlib"), {}, crops="center")
    assert release.recorded_crops(str(tmp_path / "r")) == "center"
    assert release.recorded_crops(str(tmp_path / "not-a-release")) is None
    encoded = [faces.encode_jpeg(np.random.default_rng(1).integers(0, 255, (96, 96, 3), dtype=np.uint8))]
    default = photos.load_predictor(str(tmp_path / "r"))(encoded)["age"].numpy()
    center = photos.load_predictor(str(tmp_path / "r"), "center")(encoded)["age"].numpy()
    ten = photos.load_predictor(str(tmp_path / "r"), "ten")(encoded)["age"].numpy()
    np.testing.assert_allclose(default, center, atol=1e-5)
    assert abs(float(default[0] - ten[0])) > 1e-4  # the two averages differ, so the test tells them apart
    with pytest.raises(ValueError, match="crops must be one of"):
        release.save(model, str(tmp_path / "x"), TINY, None, {}, crops="five")


def test_the_local_weight_is_chosen_where_validation_mae_is_lowest(tmp_path):
    import json

    report = {"folds": {"a": {"count": 300, "local_weight_mae": {"0": 5.0, "0.25": 4.0, "0.5": 4.5}},
                        "b": {"count": 100, "local_weight_mae": {"0": 5.0, "0.25": 6.0, "0.5": 5.2}}}}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(report))
    # Pooled by images: 0.25 -> (1200 + 600) / 400 = 4.5; 0.5 -> (1350 + 520) / 400 = 4.675
    # (a plain mean of the folds would pick 0.5: 5.0 against 4.85).
    assert al_choice.best_local_weight(str(path)) == 0.25
    del report["folds"]["b"]["local_weight_mae"]
    path.write_text(json.dumps(report))
    with pytest.raises(ValueError, match="--local_weights"):
        al_choice.best_local_weight(str(path))


def _sweep(path, maes, count=100):
    import json

    path.write_text(json.dumps({"folds": {"split": {"count": count, "local_weight_mae": maes}}}))
    return str(path)


def test_the_release_is_chosen_on_the_mean_over_views_of_the_validation_faces(tmp_path):
    """Each view weighs alike: a run best on faces as built but worst on old photos can lose."""
    a = [_sweep(tmp_path / "a_built.json", {"0": 6.0, "0.5": 5.0}),
         _sweep(tmp_path / "a_old.json", {"0": 9.0, "0.5": 10.0}, count=900)]
    b = [_sweep(tmp_path / "b_built.json", {"0": 6.0, "0.5": 5.4}),
         _sweep(tmp_path / "b_old.json", {"0": 9.0, "0.5": 9.0})]
    assert al_choice.mean_over_views(a) == {"0": 7.5, "0.5": 7.5}
    assert al_choice.best_local_weight(*a) == 0.0  # a tie goes to the smaller weight
    run, weight, table = al_choice.choose_run({"a": a, "b": b})
    assert (run, weight) == ("b", 0.5) and table["b"]["0.5"] == pytest.approx(7.2)
    assert al_choice.choose_run({"b": b, "a": a})[:2] == ("b", 0.5)
    other = [_sweep(tmp_path / "c.json", {"1": 4.0})]
    with pytest.raises(ValueError, match="no local weight in common"):
        al_choice.mean_over_views(a[:1] + other)


def test_the_nested_choice_on_a_second_population_never_sees_the_scored_fold(tmp_path):
    """Fold c's people favour weight 0 and outnumber the rest. With a or b scored, c takes part and
    pulls the choice to 0; with c scored, the view and folds a and b choose 1. Were the scored fold
    in its own choice, c would get 0 too."""
    view = [_sweep(tmp_path / "view.json", {"0": 6.0, "1": 5.0})]
    folds = {"a": {"count": 100, "local_weight_mae": {"0": 4.0, "1": 2.0}},
             "b": {"count": 100, "local_weight_mae": {"0": 4.0, "1": 2.0}},
             "c": {"count": 200, "local_weight_mae": {"0": 2.0, "1": 9.0}}}
    assert al_choice.nested_local_weight(view, folds) == {"a": 0.0, "b": 0.0, "c": 1.0}
    assert al_choice.pooled_weight_maes(folds) == {"0": pytest.approx(3.0), "1": pytest.approx(5.5)}
    with pytest.raises(ValueError, match="at least two folds"):
        al_choice.nested_local_weight(view, {"a": folds["a"]})


@pytest.mark.slow
def test_a_release_that_fails_its_check_leaves_the_earlier_release_in_place(tmp_path):
    model = build_age_model(TINY)
    probes = np.random.default_rng(0).normal(0, 1, (2, TINY.input_size, TINY.input_size, 3)).astype(np.float32)
    target = str(tmp_path / "models" / "r")
    digest, difference = release.save_checked(model, target, TINY, None, {"v": 1}, "center", probes, 1.0)
    assert release.read_description(target)["provenance"] == {"v": 1} and difference < 1.0
    with pytest.raises(ValueError, match="left as it was"):
        release.save_checked(model, target, TINY, None, {"v": 2}, "center", probes, -1.0)
    assert release.read_description(target)["provenance"] == {"v": 1}
    assert sorted(os.listdir(tmp_path / "models")) == ["r"]  # no staging folder left
    release.save_checked(model, target, TINY, None, {"v": 3}, "center", probes, 1.0)
    assert release.read_description(target)["provenance"] == {"v": 3}
    assert sorted(os.listdir(tmp_path / "models")) == ["r"]


def test_a_recorded_prior_moves_answers_to_their_populations_ages(tmp_path):
    """photos.adapt_to_population: children answered by a model whose training faces centred on 33
    are read as older (its prior pulls them up); moved to the prior their answers imply, they come
    down; photos without faces stay as they were."""
    model = build_age_model(TINY)
    target = str(tmp_path / "r")
    release.save(model, target, TINY, None, {}, "center")
    classes = len(release.read_description(target)["class_ages"])
    ages = np.arange(classes, dtype=np.float64)
    source = np.exp(-0.5 * ((ages - 33.0) / 15.0) ** 2)
    source /= source.sum()
    with pytest.raises(ValueError, match="positive and sum to 1"):
        release.record_prior(target, source[:-1], 3.0, "x")
    release.record_prior(target, source, 3.0, "hand-made")
    prior = release.recorded_prior(target)
    assert prior["smoothing"] == 3.0 and prior["measured_on"] == "hand-made"
    rng = np.random.default_rng(0)
    results, truth = [], []
    for i in range(150):  # children aged 3-9, each seen with a few years of noise
        truth.append(rng.integers(3, 10))
        seen = truth[-1] + rng.normal(0.0, 4.0)
        probs = (np.exp(-0.5 * ((ages - seen) / 8.0) ** 2) * source)[None, :]
        probs /= probs.sum()
        face = photos.FaceAge(0, float(probs[0] @ ages), 1.0, 0.0, None, 1.0, "upright", [], None)
        results.append(photos.PhotoResult(f"p{i}.jpg", [face], probs=probs))
    results.append(photos.PhotoResult("none.jpg", [], "no face found"))
    moved = photos.adapt_to_population(results, prior)
    error = lambda answered: np.mean([abs(r.faces[0].age - t) for r, t in zip(answered, truth)])  # noqa: E731
    assert error(moved[:-1]) < error(results[:-1]) - 3 and moved[-1] == results[-1]
    assert moved[0].faces[0].prior_faces == 150 and moved[0].faces[0].global_age == 0.0
    outputs.write_results(moved, str(tmp_path / "ages.csv"))
    assert list(csv.DictReader((tmp_path / "ages.csv").open()))[0]["prior_faces"] == "150"
    outputs.write_results(moved, str(tmp_path / "ages.json"))  # the answers' probabilities stay out of files


@pytest.mark.slow
def test_a_description_may_not_point_outside_its_folder(tmp_path):
    release.save(tiny_model(), str(tmp_path / "r"), TINY, None, {})
    description = json.loads((tmp_path / "r" / "model.json").read_text())
    secret = tmp_path / "secret.npz"
    secret.write_bytes(b"not yours")
    for name in ("../secret.npz", str(secret), "."):
        description["weights"]["file"] = name
        (tmp_path / "r" / "model.json").write_text(json.dumps(description))
        with pytest.raises(ValueError, match="outside its folder"):
            release.load(str(tmp_path / "r"))


@pytest.mark.slow
def test_weights_that_are_a_link_out_of_the_folder_are_refused(tmp_path):
    """Confined by where the file resolves, not by its name: a weights.npz (or a folder on its path)
    that is a symbolic link to a file outside is refused, even one whose bytes are the right ones."""
    release.save(tiny_model(), str(tmp_path / "r"), TINY, None, {})
    weights = tmp_path / "r" / "weights.npz"
    outside = tmp_path / "elsewhere" / "weights.npz"
    outside.parent.mkdir()
    weights.rename(outside)
    weights.symlink_to(outside)  # its SHA-256 matches model.json: only the confinement refuses it
    with pytest.raises(ValueError, match="outside its folder"):
        release.load(str(tmp_path / "r"))
    weights.unlink()
    (tmp_path / "r" / "sub").symlink_to(outside.parent, target_is_directory=True)
    _rewrite(tmp_path / "r", weights={**json.loads((tmp_path / "r" / "model.json").read_text())["weights"],
                                      "file": "sub/weights.npz"})
    with pytest.raises(ValueError, match="outside its folder"):
        release.load(str(tmp_path / "r"))


# --- model files read with a bound and by shape ---------------------------------------------------------


def _rewrite(folder, **changes):
    """model.json with `changes` (None deletes a key), as a hostile or damaged file might have it."""
    description = json.loads((folder / "model.json").read_text())
    for key, value in changes.items():
        if value is None:
            description.pop(key)
        else:
            description[key] = value
    (folder / "model.json").write_text(json.dumps(description))


def _sign(folder, payload: bytes):
    """weights.npz replaced by `payload`, with model.json's SHA-256 made to match (a forged folder)."""
    import hashlib

    (folder / "weights.npz").write_bytes(payload)
    description = json.loads((folder / "model.json").read_text())
    _rewrite(folder, weights=dict(description["weights"], sha256=hashlib.sha256(payload).hexdigest()))


@pytest.mark.slow
def test_a_zip_bomb_of_weights_is_refused_from_its_declared_sizes_before_it_is_inflated(tmp_path):
    """A weights.npz small on disk that inflates to gigabytes drove the process to 13 GB before it
    was refused; each member's declared size is now checked against its variable first."""
    import io
    import zipfile

    folder = tmp_path / "r"
    release.save(tiny_model(), str(folder), TINY, None, {})
    with np.load(folder / "weights.npz") as arrays:
        real = {name: arrays[name] for name in arrays.files}
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in real.items():
            with archive.open(name + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array)
                if name == next(iter(real)):
                    for _ in range(256):  # 256 MiB of zeros after the array: 256 KB compressed
                        member.write(bytes(1 << 20))
    assert len(bomb.getvalue()) < (folder / "weights.npz").stat().st_size + (1 << 20)  # about as small on disk
    _sign(folder, bomb.getvalue())
    with pytest.raises(ValueError, match=r"inflates to 268,[\d,]+ bytes where .* needs [\d,]+; refused before inflating"):
        release.load(str(folder))


@pytest.mark.slow
def test_weights_whose_arrays_differ_in_shape_or_dtype_are_refused_before_their_data_is_read(tmp_path):
    import io

    folder = tmp_path / "r"
    release.save(tiny_model(), str(folder), TINY, None, {})
    with np.load(folder / "weights.npz") as arrays:
        real = {name: arrays[name] for name in arrays.files}
    name = max(real, key=lambda n: real[n].size)
    for wrong in (real[name].reshape(-1), real[name].view(np.int16)):  # as many bytes: only the header differs
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **dict(real, **{name: wrong}))
        _sign(folder, buffer.getvalue())
        with pytest.raises(ValueError, match=f"{name}.npy holds .* where its variable is"):
            release.load(str(folder))


def test_a_weights_file_larger_than_its_variables_can_be_is_refused_unread(tmp_path):
    folder = tmp_path / "r"
    release.save(tiny_model(), str(folder), TINY, None, {})
    with open(folder / "weights.npz", "r+b") as handle:
        handle.truncate(3 << 30)  # sparse: nothing written
    with pytest.raises(ValueError, match=r"weights.npz is 3.0 GiB, more than the \d+ variables model.json describes"):
        release.load(str(folder))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["model.json", "weights.npz"])
def test_a_model_file_that_is_a_pipe_is_refused_without_waiting(tmp_path, name):
    import threading

    folder = tmp_path / "r"
    release.save(tiny_model(), str(folder), TINY, None, {})
    (folder / name).unlink()
    os.mkfifo(folder / name)  # opening it for reading waits for a writer that never comes
    outcome = []

    def load():
        try:
            release.load(str(folder))
        except ValueError as error:
            outcome.append(str(error))

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(timeout=60)
    if worker.is_alive():
        with open(folder / name, "wb"):  # unblock it, then fail
            pass
        pytest.fail(f"a {name} that is a pipe was waited on")
    assert outcome == [f"{folder / name} is a pipe, not a regular file; refused."]


BAD_DESCRIPTIONS = {
    "a list": (lambda folder: (folder / "model.json").write_text("[1, 2]"), "holds a JSON list, not a model description"),
    "no weights": (lambda folder: _rewrite(folder, weights=None), "no weights (not a complete model description)"),
    "nested 100,000 deep": (lambda folder: (folder / "model.json").write_text("[" * 100_000 + "]" * 100_000),
                            "nested too deep to be a model description"),
    "weights as a list": (lambda folder: _rewrite(folder, weights=["weights.npz"]), "'weights' must name a file"),
    "an unknown model setting": (lambda folder: _rewrite(folder, model={"depth": 18, "width": 9}),
                                 "'model' must be an object of"),
    "an LSTM too large to build": (lambda folder: _rewrite(folder, model={"lstm_units": 10 ** 9}),
                                   "'model' lstm_units 1000000000 is not a value this model builds"),
    "class ages as text": (lambda folder: _rewrite(folder, class_ages="0-100"), "'class_ages' must be a list"),
    "a crop of another shape": (lambda folder: _rewrite(folder, face_crop={"size": 256, "colour": "red"}),
                                "'face_crop' is not a face crop"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_DESCRIPTIONS))
def test_a_description_of_the_wrong_shape_is_one_error_naming_model_json(tmp_path, case):
    """A model.json that is a list, lacks its weights or nests 100,000 deep ended in a traceback
    (KeyError, AttributeError, RecursionError) through predict, export and train."""
    damage, expected = BAD_DESCRIPTIONS[case]
    folder = tmp_path / "r"
    release.save(tiny_model(), str(folder), TINY, None, {})
    damage(folder)
    for read in (release.load, release.open_model_path):
        with pytest.raises(ValueError) as info:
            read(str(folder))
        assert str(info.value).startswith(str(folder / "model.json")) and expected in str(info.value), str(info.value)
        assert "\n" not in str(info.value)


def test_a_description_of_a_model_that_cannot_be_built_is_one_error_naming_model_json(tmp_path):
    folder = tmp_path / "r"
    release.save(tiny_model(), str(folder), TINY, None, {})
    _rewrite(folder, model={"depth": 7, "layout": "torch"})
    with pytest.raises(ValueError, match="model.json: not a model this code builds"):
        release.load(str(folder))


def test_a_starting_checkpoint_that_is_a_pipe_is_refused_without_waiting(tmp_path):
    """train --init_checkpoint=<a pipe named .keras>: its digest and Keras would open it and wait."""
    import threading

    from keras_alage.evaluation import provenance
    from keras_alage.models import weight_import

    fifo = tmp_path / "start.keras"
    os.mkfifo(fifo)
    for call in (lambda: provenance.checkpoint_digest(str(fifo)),
                 lambda: weight_import.load_initial_weights(tiny_model(), str(fifo))):
        outcome = []
        worker = threading.Thread(target=lambda: outcome.append(pytest.raises(ValueError, call).value), daemon=True)
        worker.start()
        worker.join(timeout=30)
        if worker.is_alive():
            with open(fifo, "wb"):  # unblock it, then fail
                pass
            pytest.fail("a starting checkpoint that is a pipe was waited on")
        assert str(outcome[0]) == f"--init_checkpoint={fifo} is a pipe, not a regular file; refused."


def test_a_release_folder_is_replaced_whole_and_what_a_killed_replace_left_is_cleared(tmp_path):
    directory, retired = tmp_path / "model", tmp_path / "model.retired"
    for folder, text in ((directory, "current"), (retired, "left by a killed replace"), (tmp_path / "new", "new")):
        folder.mkdir()
        (folder / "model.json").write_text(text)
    release.replace_folder(str(tmp_path / "new"), str(directory))
    assert (directory / "model.json").read_text() == "new" and sorted(os.listdir(tmp_path)) == ["model"]
