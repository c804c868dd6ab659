"""Releases of several networks: the recorded combination of the members' ages (mean, median,
weights per band of their median), each member's own cut of the crop, the per-sex interval, the
CSV columns, and the checks of their files."""

import csv

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_alage.evaluation import intervals
from keras_alage.models import age_model, attention, faceapi_import, faceres_import, release, xception
from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.serving import ensemble, export, outputs, photos
from alage_pipelines import augment, faces

TINY = ModelConfig(depth=18, input_size=32, age_classes="utkface")
CUT = faceapi_import.FaceApiCut(0.05, 0.1, 0.9, 0.8)


def tiny_al_model():
    model = build_age_model(TINY)
    age_model.set_trained_heads(model, ("global", "local"))
    attention.freeze_attention_state(model)
    return model


def random_faceapi_net(seed=0):
    """face-api's layout with Keras' random initial weights and an age bias of 30 years (its
    weights need npm); its age head is scaled so different inputs get ages years apart."""
    keras.utils.set_random_seed(seed)
    net = xception.build_faceapi_age_net()
    head = net.get_layer("fc_age")
    head.kernel.assign(head.kernel.numpy() * 1e4 / max(float(np.abs(head.kernel.numpy()).sum()), 1e-12))
    head.bias.assign([30.0])
    return net


def crops(n=3, side=96):
    rng = np.random.default_rng(1)
    rows = np.linspace(0, 1, side)[:, None, None]  # dark top, bright bottom: a face-like up and down
    images = [np.clip(40 + 60 * i + 120 * rows + rng.normal(0, 30, (side, side, 3)), 0, 255).astype(np.uint8)
              for i in range(n)]
    return images, [faces.encode_jpeg(image) for image in images]


def table():
    return intervals.IntervalTable((20.0,), (-4.0, -9.0), (3.0, 12.0), 0.9, (100, 100), "test")


@pytest.mark.slow
def test_the_answer_is_the_mean_of_both_networks_own_answers():
    model, net = tiny_al_model(), random_faceapi_net()
    server = ensemble.EnsembleServer(model, "center", net, CUT, table=table())
    _, encoded = crops()
    out = {k: v.numpy() for k, v in server.serve_encoded(tf.constant(encoded)).items()}
    alone = export.AgeServer(model, "center").serve_encoded(tf.constant(encoded))
    np.testing.assert_allclose(out["al_age"], alone["age"].numpy(), atol=1e-4)
    decoded = [augment.decode(e) for e in encoded]
    own = net(np.stack([faceapi_import.cut_face(d, CUT).numpy() for d in decoded]))["age"].numpy().reshape(-1)
    np.testing.assert_allclose(out["faceapi_age"], own, atol=1e-4)
    assert np.ptp(own) > 0.5  # the answer depends on the face, so a wrong cut cannot pass
    np.testing.assert_allclose(out["age"], 0.5 * out["al_age"] + 0.5 * out["faceapi_age"], atol=1e-4)
    low, high = intervals.apply(table(), out["age"])
    np.testing.assert_allclose(out["age_low"], low, atol=1e-4)
    np.testing.assert_allclose(out["age_high"], high, atol=1e-4)
    assert "age_std" not in out  # the AL distribution's spread is not the combined answer's
    # Decoded crops give what their encodings give.
    by_crops = server.serve_crops(tf.constant(np.stack([d.numpy() for d in decoded])))
    np.testing.assert_allclose(by_crops["age"].numpy(), out["age"], atol=1e-4)


def test_face_apis_cut_is_its_rectangle_of_the_crop_padded_and_resized():
    crop = np.zeros((100, 100, 3), np.uint8)
    crop[10:90, 5:95] = 200  # the rectangle CUT selects: x 5-95, y 10-90
    net_input = faceapi_import.cut_face(tf.constant(crop), CUT).numpy()
    pixels = (net_input * np.array([0.229, 0.224, 0.225]) + np.array([0.485, 0.456, 0.406])) * 255
    # 90 wide, 80 high: padded by 5 rows above and below, so the middle is the bright face
    assert np.allclose(pixels[20:90], 200, atol=1.0)
    assert np.allclose(pixels[:5], 0, atol=1.0) and np.allclose(pixels[-5:], 0, atol=1.0)


def test_the_combination_rules_and_their_checks():
    ages = {"al": np.array([20.0, 10.0, 70.0]), "faceapi": np.array([40.0, 12.0, 60.0]),
            "faceres": np.array([30.0, 30.0, 40.0])}
    assert ensemble.combine({"al": 20.0, "faceapi": 40.0}) == 30.0
    three = ("al", "faceapi", "faceres")
    np.testing.assert_allclose(ensemble.combine(ages, ensemble.Combination("mean", three)), [30, 52 / 3, 170 / 3])
    np.testing.assert_allclose(ensemble.combine(ages, ensemble.Combination("median", three)), [30, 12, 60])
    # Bands of the members' median age (30, 12, 60): under 15 the second row, from 50 the third.
    banded = ensemble.Combination("banded", three, (15.0, 50.0), ((0.2, 0.8, 0.0), (1.0, 0.0, 0.0), (0.0, 0.5, 0.5)))
    np.testing.assert_allclose(ensemble.combine(ages, banded), [20.0, 0.2 * 10 + 0.8 * 12, 50.0])
    graph = ensemble.combine({k: tf.constant(v, tf.float32) for k, v in ages.items()}, banded)
    np.testing.assert_allclose(graph.numpy(), [20.0, 0.2 * 10 + 0.8 * 12, 50.0], atol=1e-5)
    graph_median = ensemble.combine({k: tf.constant(v, tf.float32) for k, v in ages.items()},
                                    ensemble.Combination("median", three))
    np.testing.assert_allclose(graph_median.numpy(), [30, 12, 60])
    np.testing.assert_allclose(ensemble.spread(*ages.values()), [20, 20, 30])
    assert ensemble.Combination.from_json(banded.to_json()) == banded
    # Release v4's record reads as the plain mean of its two members.
    assert ensemble.Combination.from_json({"rule": "mean", "faceapi_weight": 0.5}) == ensemble.Combination()
    # Shifts per predicted sex (female row first) and band of the combined age, numpy and graph alike.
    shifted = ensemble.Combination("mean", three, shift_edges=(20.0,), shifts=((5.0, 8.0), (0.0, -1.0)))
    female = np.array([0.9, 0.2, 0.6])
    np.testing.assert_allclose(ensemble.combine(ages, shifted, female), [30 + 8, 52 / 3 + 0, 170 / 3 + 8])
    graph = ensemble.combine({k: tf.constant(v, tf.float32) for k, v in ages.items()}, shifted,
                             tf.constant(female, tf.float32))
    np.testing.assert_allclose(graph.numpy(), [38, 52 / 3, 170 / 3 + 8], atol=1e-4)
    assert ensemble.Combination.from_json(shifted.to_json()) == shifted
    with pytest.raises(ValueError, match="predicted sex"):
        ensemble.combine(ages, shifted)
    with pytest.raises(ValueError, match="shifts need"):
        ensemble.Combination("mean", three, shift_edges=(20.0,), shifts=((5.0,), (0.0,)))
    with pytest.raises(ValueError, match="rule"):
        ensemble.Combination("vote", three)
    with pytest.raises(ValueError, match="summing"):
        ensemble.Combination("banded", three, (15.0,), ((0.5, 0.5, 0.5), (1.0, 0.0, 0.0)))
    with pytest.raises(ValueError, match="one weight row per band"):
        ensemble.Combination("banded", three, (15.0,), ((1.0, 0.0, 0.0),))
    with pytest.raises(ValueError, match="members"):
        ensemble.Combination("mean", ("al", "dlib"))


def random_faceres_net(seed=0):
    """Keras's random start, and random batch norms (a fold that forgot their scale or offset would
    still answer alike with ones and zeros)."""
    keras.utils.set_random_seed(seed)
    net = faceres_import.build_faceres_net()
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if isinstance(layer, faceres_import.FoldedBatchNorm):
            layer.scale.assign(rng.uniform(0.5, 2.0, layer.scale.shape).astype(np.float32))
            layer.offset.assign(rng.normal(0, 0.5, layer.offset.shape).astype(np.float32))
    return net


def sex_table():
    return intervals.IntervalTable((20.0,), (-1.0, -2.0, -0.5, -1.5), (0.5, 1.0, 0.25, 0.75), 0.9,
                                   (100,) * 4, "test", 2.0, ("female", "male"))


@pytest.mark.slow
def test_three_members_each_answer_on_their_own_cut_and_the_interval_follows_the_predicted_sex():
    model, net, res = tiny_al_model(), random_faceapi_net(), random_faceres_net()
    res_cut = faceapi_import.FaceApiCut(0.1, 0.1, 0.8, 0.8)
    combination = ensemble.Combination("banded", ("al", "faceapi", "faceres"), (25.0,),
                                       ((0.5, 0.5, 0.0), (0.2, 0.3, 0.5)))
    server = ensemble.EnsembleServer(model, "center", net, CUT, combination, sex_table(),
                                     ensemble.Faceres(res, res_cut, "expectation"))
    # served with its batch norms folded (`faceres_import.serving_net`), and that copy is what an export saves
    assert server.faceres_net is server.faceres.net and server.faceres_net is not res
    assert not any(isinstance(layer, faceres_import.FoldedBatchNorm) for layer in server.faceres_net.layers)
    _, encoded = crops()
    out = {k: v.numpy() for k, v in server.serve_encoded(tf.constant(encoded)).items()}
    decoded = [augment.decode(e) for e in encoded]
    probs = res(np.stack([faceres_import.cut_face(d, res_cut).numpy() for d in decoded]))["age_probs"].numpy()
    np.testing.assert_allclose(out["faceres_age"], faceres_import.readout(probs, "expectation"), atol=1e-3)
    members = {m: out[f"{m}_age"] for m in combination.members}
    np.testing.assert_allclose(out["age"], ensemble.combine(members, combination), atol=1e-3)
    gender = net(np.stack([faceapi_import.cut_face(d, CUT).numpy() for d in decoded]))["gender"].numpy()
    np.testing.assert_allclose(out["faceapi_female"], gender[:, 1], atol=1e-5)
    group = np.where(gender[:, 1] >= 0.5, 0, 1)
    low, high = intervals.apply(sex_table(), out["age"], ensemble.spread(*members.values()), group)
    np.testing.assert_allclose(out["age_low"], low, atol=1e-3)
    np.testing.assert_allclose(out["age_high"], high, atol=1e-3)
    # The other sex's offsets would give another interval: the group is used, not ignored.
    _, other_high = intervals.apply(sex_table(), out["age"], ensemble.spread(*members.values()), 1 - group)
    assert np.abs(other_high - high).min() > 0.1
    with pytest.raises(ValueError, match="does not have"):
        ensemble.EnsembleServer(model, "center", net, CUT, combination, sex_table())


def three_network_release(tmp_path):
    folder = str(tmp_path / "v5")
    release.save(tiny_al_model(), folder, TINY, faces.CropSpec(96, 0.6, detector="dlib"), {}, crops="center")
    release.save_faceapi(folder, random_faceapi_net(), CUT.to_json(), ensemble.Combination().to_json(), "test")
    release.save_faceres(folder, random_faceres_net(), faceapi_import.FaceApiCut(0.1, 0.1, 0.8, 0.8).to_json(),
                         "top2", "test")
    release.record_combination(folder, ensemble.Combination("median", ("al", "faceapi", "faceres")).to_json())
    release.record_intervals(folder, sex_table().to_json())
    return folder


@pytest.mark.slow
def test_a_three_network_release_answers_from_its_folder_and_its_export(tmp_path):
    folder = three_network_release(tmp_path)
    predict = photos.load_predictor(folder)
    _, encoded = crops(2)
    out = {k: np.asarray(v) for k, v in predict(encoded).items()}
    np.testing.assert_allclose(out["age"], np.median(np.stack([out["al_age"], out["faceapi_age"], out["faceres_age"]]),
                                                     axis=0), atol=1e-3)
    assert (out["age_low"] <= out["age"]).all() and (out["age"] <= out["age_high"]).all()
    images, _ = crops(2)
    located = photos.PhotoFaces("a.jpg", [faces.center_face(images[0].shape, predict.face_crop)], encoded[:1])
    result = photos.answer_faces(located, {k: v[:1] for k, v in out.items()}, predict.face_crop, predict.input_size)
    outputs.write_results([result], str(tmp_path / "ages.csv"))
    row = next(csv.DictReader((tmp_path / "ages.csv").open()))
    assert float(row["faceres_age"]) == pytest.approx(float(out["faceres_age"][0]), abs=0.01)
    server = photos.serving_module(release.open_model_path(folder))
    target = export.export_server(server, str(tmp_path / "serving"), "age", 1)
    np.testing.assert_allclose(photos.load_predictor(target)(encoded)["age_high"].numpy(), out["age_high"], atol=1e-3)
    with open(f"{folder}/{release.FACERES_FILE}", "r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    with pytest.raises(ValueError, match="SHA-256"):
        photos.load_predictor(folder)


def two_network_release(tmp_path):
    folder = str(tmp_path / "v4")
    release.save(tiny_al_model(), folder, TINY, faces.CropSpec(96, 0.6, detector="dlib"), {}, crops="center")
    release.save_faceapi(folder, random_faceapi_net(), CUT.to_json(), ensemble.Combination().to_json(), "test")
    release.record_intervals(folder, table().to_json())
    return folder


def test_a_two_network_release_answers_with_intervals_in_the_csv(tmp_path):
    folder = two_network_release(tmp_path)
    predict = photos.load_predictor(folder)
    images, encoded = crops(2)
    out = predict(encoded)
    assert {"age_low", "age_high", "faceapi_age", "al_age"} <= set(out)
    found = [faces.center_face(image.shape, predict.face_crop) for image in images]
    located = photos.PhotoFaces("a.jpg", found[:1], encoded[:1])
    result = photos.answer_faces(located, {k: np.asarray(v)[:1] for k, v in out.items()}, predict.face_crop,
                                 predict.input_size)
    path = tmp_path / "ages.csv"
    outputs.write_results([result], str(path))
    row = next(csv.DictReader(path.open()))
    assert float(row["age_low"]) <= float(row["age"]) <= float(row["age_high"])
    assert row["age_std"] == "" and float(row["faceapi_age"]) == pytest.approx(float(out["faceapi_age"][0]), abs=0.01)


@pytest.mark.slow
def test_the_export_of_a_two_network_release_answers_alike(tmp_path):
    folder = two_network_release(tmp_path)
    server = photos.serving_module(release.open_model_path(folder))
    target = export.export_server(server, str(tmp_path / "serving"), "age", 1)
    _, encoded = crops(2)
    exported = photos.load_predictor(target)
    assert exported.input_size == TINY.input_size
    np.testing.assert_allclose(exported(encoded)["age"].numpy(), server.serve_encoded(tf.constant(encoded))["age"],
                               atol=1e-4)


@pytest.mark.slow
def test_a_damaged_faceapi_file_is_refused(tmp_path):
    folder = two_network_release(tmp_path)
    with open(f"{folder}/{release.FACEAPI_FILE}", "r+b") as f:
        f.seek(100)
        f.write(b"\0\0\0\0")
    with pytest.raises(ValueError, match="SHA-256"):
        photos.load_predictor(folder)


def test_a_server_shifts_by_face_apis_predicted_sex_and_reads_groups_in_either_order():
    model, net = tiny_al_model(), random_faceapi_net()
    shifted = ensemble.Combination("mean", ("al", "faceapi"), shift_edges=(200.0,), shifts=((7.0, 0.0), (-3.0, 0.0)))
    reversed_table = intervals.IntervalTable((20.0,), (-0.5, -1.5, -1.0, -2.0), (0.25, 0.75, 0.5, 1.0), 0.9,
                                             (100,) * 4, "test", 2.0, ("male", "female"))
    server = ensemble.EnsembleServer(model, "center", net, CUT, shifted, reversed_table)
    _, encoded = crops()
    out = {k: v.numpy() for k, v in server.serve_encoded(tf.constant(encoded)).items()}
    mean = (out["al_age"] + out["faceapi_age"]) / 2
    female = out["faceapi_female"] >= 0.5
    np.testing.assert_allclose(out["age"], mean + np.where(female, 7.0, -3.0), atol=1e-3)
    group = ensemble.sex_group(out["faceapi_female"], reversed_table)
    np.testing.assert_array_equal(group, np.where(female, 1, 0))  # "female" is the table's second group
    low, high = intervals.apply(reversed_table, out["age"], ensemble.spread(out["al_age"], out["faceapi_age"]), group)
    np.testing.assert_allclose(out["age_high"], high, atol=1e-3)


@pytest.mark.slow
def test_a_release_whose_combination_or_table_is_not_ours_is_one_line(tmp_path):
    folder = three_network_release(tmp_path)
    description = release.read_description(folder)
    for damage in ({"combination": {"rule": "mean", "members": ["al", "faceapi"], "edges": 5}},
                   {"combination": {"rule": "banded", "members": ["al", "faceapi"], "edges": [], "weights": [[None, 1]]}},
                   {"intervals": dict(sex_table().to_json(), upper=[float("nan")] * 4)},
                   {"faceres": dict(description["faceres"], cut={"x": 0.1})}):
        release.write_description(folder, dict(description, **damage))
        with pytest.raises(ValueError, match="model.json"):
            photos.load_predictor(folder)
