import collections
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import tempfile

import cv2
import numpy as np
import pytest
import tensorflow as tf

from alage_pipelines import build, dataset, faces, files, protocols, runners, tfrecords
from alage_pipelines.readers import fgnet
from alage_pipelines.records import AgeRecord

pytest.importorskip("apache_beam")

REPO = pathlib.Path(__file__).resolve().parents[2]

ALIGNED = faces.FacePolicy(detect=False)


def _face_jpeg(path, seed, size=(90, 80)):
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 255, (9, 8, 3), dtype=np.uint8), size[::-1])
    assert cv2.imwrite(str(path), image)
    return str(path)


def _good_and_bad(tmp_path):
    """Records of eight good photos and one of each kind of bad input, with the expected reason."""
    tmp_path.mkdir()
    good = [AgeRecord(_face_jpeg(tmp_path / f"good{i}.jpg", i), 20.0 + i, 20 + i, subject=f"s{i % 3}") for i in range(6)]
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.full((50, 70), 128, np.uint8))
    alpha = tmp_path / "alpha.png"
    cv2.imwrite(str(alpha), np.full((60, 60, 4), 200, np.uint8))
    good += [AgeRecord(str(grey), 30.0, 30, subject="s0"), AgeRecord(str(alpha), 31.0, 31, subject="s1")]

    whole = (tmp_path / "good0.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "damaged.jpg").write_bytes(whole[: len(whole) // 2] + b"\xff\xd9")  # end marker kept
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(400) + b"\xff\xd9")
    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "folder.jpg").mkdir()
    _face_jpeg(tmp_path / "label.jpg", 99)
    bad = {
        "missing.jpg": ("file not found", 25),
        "truncated.jpg": ("truncated JPEG (no end-of-image marker)", 25),
        "empty.jpg": ("file is empty", 25),
        "damaged.jpg": ("damaged or unsupported JPEG (libjpeg: Corrupt JPEG data", 25),
        "corrupt.jpg": ("damaged or unsupported JPEG", 25),
        "notes.txt": ("not a decodable image (corrupt, truncated or unsupported format)", 25),
        "folder.jpg": ("is a directory, not an image file", 25),
        "label.jpg": ("label 250 outside 0-100", 250),
    }
    records = list(good)
    for name, (_, label) in bad.items():
        path = str(tmp_path / name)
        records.append(AgeRecord(path, float(min(label, 100)), label, subject="s2"))
    expected = {str(tmp_path / name): reason for name, (reason, _) in bad.items()}
    return records, expected


def _config(out, **kwargs):
    return build.BuildConfig(output_dir=str(out), num_classes=101, crop=faces.CropSpec(size=64), policy=ALIGNED, **kwargs)


def test_bad_inputs_are_skipped_with_reasons_and_good_ones_written(tmp_path):
    records, expected = _good_and_bad(tmp_path / "photos")
    split = protocols.random_split(records, 0.3, seed=1)
    manifest = build.build_tfrecords(split, records, _config(tmp_path / "out", records_per_shard=3), "mixed")

    skipped = {entry["path"]: entry["reason"] for entry in manifest["skipped"]}
    assert sorted(p for p in skipped if p in expected) == sorted(expected)
    for path, reason in expected.items():  # libjpeg's own words follow ours
        assert skipped[path].startswith(reason), (path, skipped[path])
    written = [r for r in records if r.path not in skipped]
    assert manifest["records"] == len(written) == 8  # greyscale and alpha PNGs are fine
    assert sum(part["records"] + part["skipped"] for part in manifest["parts"].values()) == len(records)
    assert manifest["skipped_counts"]["file not found"] == 1

    out = tmp_path / "out"
    paths = []
    for part, info in manifest["parts"].items():
        assert len(info["shards"]) == max(1, -(-info["photos"] // 3))
        for shard in info["shards"]:
            for serialized in tf.data.TFRecordDataset(str(out / shard["file"])):
                example = tfrecords.parse_example(serialized)
                image = tf.io.decode_jpeg(example["image"]).numpy()
                assert image.shape == (64, 64, 3)
                paths.append(example["path"].numpy().decode())
    assert sorted(paths) == sorted(r.path for r in written)
    build.verify_shards(str(out))
    log = build.read_record_log(str(out))
    assert len(log) == len(records)
    by_path = {e["path"]: e for e in log}
    assert all(by_path[r.path]["subject"] == r.subject for r in records)
    test_ages = build.Build.open(str(out)).fold_ages("split", "test")
    assert sorted(test_ages) == sorted(r.age for r in written if r.path in set(split.folds[0].test))
    assert json.loads((out / build.MANIFEST).read_text())["split"] == split.to_json()


@pytest.mark.slow
def test_existing_output_is_kept_unless_overwrite_and_a_failed_build_leaves_it_intact(tmp_path, monkeypatch):
    records = [AgeRecord(_face_jpeg(tmp_path / f"p{i}.jpg", i), 10.0, 10) for i in range(4)]
    split = protocols.random_split(records, 0.5)
    out = tmp_path / "out"
    first = build.build_tfrecords(split, records, _config(out), "tiny")
    with pytest.raises(FileExistsError, match="--overwrite"):
        build.build_tfrecords(split, records, _config(out), "tiny")

    def broken(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(build, "_summarise", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        build.build_tfrecords(split, records, _config(out, overwrite=True), "tiny")
    assert build.read_build_manifest(str(out))["created"] == first["created"]
    build.verify_shards(str(out))
    assert sorted(os.listdir(tmp_path)) == sorted([f"p{i}.jpg" for i in range(4)] + ["out", ".out.lock"])  # no staging

    monkeypatch.undo()
    second = build.build_tfrecords(split, records, _config(out, overwrite=True, records_per_shard=1), "tiny")
    assert sum(len(p["shards"]) for p in second["parts"].values()) == 4
    assert len(list(out.glob("*.tfrecord"))) == 4


def test_a_build_never_replaces_nor_lies_inside_what_it_reads(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    records = [AgeRecord(_face_jpeg(photos / f"p{i}.jpg", i), 10.0, 10) for i in range(4)]
    split = protocols.random_split(records, 0.5)
    for out in (photos, tmp_path):  # the photos' folder itself, or one that holds it
        with pytest.raises(FileExistsError, match="is one of the inputs: it holds the photo"):
            build.build_tfrecords(split, records, _config(out, overwrite=True), "tiny")
    assert sorted(os.listdir(photos)) == [f"p{i}.jpg" for i in range(4)]  # nothing deleted, nothing staged
    listed = tmp_path / "faces.csv"
    listed.write_text("path,age\n")
    for out, given in ((photos / "build", photos), (photos, photos / "sub"), (tmp_path / "faces.csv", listed),
                       (tmp_path, listed)):  # inside, holding, the same file, the folder of a CSV
        with pytest.raises(FileExistsError, match=f"--data_dir={given} is it, holds it or lies inside it"):
            build.check_not_an_input(str(out), given=[("--data_dir", str(given))])
    build.check_not_an_input(str(tmp_path / "build"), records, [("--data_dir", str(listed)), ("--image_root", None)])


def test_a_changed_shard_fails_verification(tmp_path):
    records = [AgeRecord(_face_jpeg(tmp_path / f"p{i}.jpg", i), 10.0, 10) for i in range(2)]
    out = tmp_path / "out"
    manifest = build.build_tfrecords(protocols.random_split(records, 0.5), records, _config(out), "tiny")
    shard = out / manifest["parts"]["train"]["shards"][0]["file"]
    shard.write_bytes(shard.read_bytes()[:-1] + b"\0")
    with pytest.raises(ValueError, match=shard.name):
        build.verify_shards(str(out))


def test_parts_of_kfold_and_single_splits():
    records = [AgeRecord(f"{s}_{i}.jpg", 1.0, 1, subject=s) for s in "abcdef" for i in range(2)]
    parts, folds = build.parts_of(protocols.subject_kfold(records, 3, seed=0))
    assert sorted(parts) == ["fold0", "fold1", "fold2"] and sum(map(len, parts.values())) == 12
    assert folds["fold1"] == {"train": ["fold0", "fold2"], "test": ["fold1"]}
    parts, folds = build.parts_of(protocols.random_split(records, 0.25))
    assert (len(parts["train"]), len(parts["test"])) == (9, 3)
    assert folds == {"split": {"train": ["train"], "test": ["test"]}}
    overlapping = protocols.Split("odd", 0, [protocols.Fold("a", ["x"], ["y"]), protocols.Fold("b", ["y"], ["y", "x"])])
    with pytest.raises(ValueError, match="disjoint"):
        build.parts_of(overlapping)


@pytest.mark.slow
def test_photos_without_a_face_are_skipped_or_centre_cropped_by_flag(tmp_path):
    for shade in (90, 160):
        cv2.imwrite(str(tmp_path / f"wall{shade}.jpg"), np.full((80, 80, 3), shade, np.uint8))
    records = [AgeRecord(str(tmp_path / f"wall{shade}.jpg"), 40.0, 40) for shade in (90, 160)]
    split = protocols.random_split(records, 0.5)
    config = build.BuildConfig(str(tmp_path / "skip"), 101, faces.CropSpec(size=64),
                               faces.FacePolicy(detect=True, no_face="skip"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match="no photo gave a record \\(2 no face found\\)"):
        build.build_tfrecords(split, records, config, "walls")  # every photo skipped: nothing to build
    assert not (tmp_path / "skip").exists()
    config = dataclasses.replace(config, output_dir=str(tmp_path / "center"),
                                 policy=faces.FacePolicy(detect=True, no_face="center"))
    manifest = build.build_tfrecords(split, records, config, "walls")
    assert manifest["records"] == 2
    assert manifest["detector_calls"] == 0  # answered from the cache the skipped build filled
    assert sum(p["faces"].get("center", 0) for p in manifest["parts"].values()) == 2


@pytest.fixture(scope="module")
def fgnet_build(shared_data, tmp_path_factory):
    """A real FG-NET build with MTCNN in two worker processes: six subjects, 3 folds."""
    result = fgnet.read_fgnet(shared_data / "fgnet")
    subjects = sorted({r.subject for r in result.records})[::14][:6]
    records = [r for r in result.records if r.subject in subjects]
    split = protocols.subject_kfold(records, 3, seed=0)
    out = tmp_path_factory.mktemp("fgnet") / "build"
    config = build.BuildConfig(str(out), 70, faces.CropSpec(), faces.FacePolicy(no_face="center"), records_per_shard=16, workers=2)
    return out, build.build_tfrecords(split, records, config, "fgnet"), split


@pytest.mark.slow
def test_fgnet_build_with_detection_has_a_complete_manifest(fgnet_build):
    out, manifest, split = fgnet_build
    assert manifest["skipped"] == [] and manifest["records"] == sum(len(f.test) for f in split.folds)
    methods = collections.Counter()
    for part in manifest["parts"].values():
        methods.update(part["faces"])
    assert methods["upright"] >= 0.8 * manifest["records"]
    assert manifest["crop"] == {"size": 256, "margin": 0.4, "square": True, "detector": "mtcnn"}
    build.verify_shards(str(out))


@pytest.mark.slow
def test_one_epoch_of_a_real_fgnet_build_yields_every_training_record_once(fgnet_build):
    out, manifest, split = fgnet_build
    fold = split.folds[1]
    files = build.Build.open(str(out)).fold_files(fold.name, "train")
    data = dataset.make_dataset(files, dataset.DatasetConfig(5, 64, training=True, drop_remainder=False))
    seen = collections.Counter()
    for images, labels in data:
        assert images.shape[1:] == (64, 64, 3)
        seen.update(p.decode() for p in labels["path"].numpy())
    assert seen == collections.Counter(fold.train)
    test_files = build.Build.open(str(out)).fold_files(fold.name, "test")
    evaluated = [p.decode() for _, l in dataset.make_dataset(test_files, dataset.DatasetConfig(8, 64)) for p in l["path"].numpy()]
    assert sorted(evaluated) == sorted(fold.test)


def test_a_build_without_records_fails_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="found no usable photo.*2 dropped: 2 name is not"):
        build.build_tfrecords(protocols.random_split([AgeRecord("x.jpg", 1.0, 1)], 0.5), [], _config(tmp_path / "out"),
                              "utkface", reader_dropped=[("a.jpg", "name is not AGE"), ("b.jpg", "name is not AGE")])
    (tmp_path / "bad").mkdir()
    records = [AgeRecord(str(tmp_path / "bad" / f"missing{i}.jpg"), 10.0, 10) for i in range(3)]
    with pytest.raises(ValueError, match="no photo gave a record \\(3 file not found\\)"):
        build.build_tfrecords(protocols.random_split(records, 0.4), records, _config(tmp_path / "out"), "tiny")
    assert sorted(os.listdir(tmp_path)) == [".out.lock", "bad"]  # no output, no staging folder (the lock is free)


def test_staging_left_by_a_killed_build_is_removed_by_the_next(tmp_path):
    import subprocess

    finished = subprocess.Popen(["true"])
    finished.wait()
    stale = tmp_path / f".out.building-{finished.pid}-abc"
    running = tmp_path / f".out.building-{os.getpid()}-def"  # a build still running: kept
    stale.mkdir(), running.mkdir()
    records = [AgeRecord(_face_jpeg(tmp_path / f"p{i}.jpg", i), 10.0, 10) for i in range(2)]
    build.build_tfrecords(protocols.random_split(records, 0.5), records, _config(tmp_path / "out"), "tiny")
    assert not stale.exists() and running.exists()


def test_shards_are_verified_once_per_build_state_and_a_bad_one_is_named(tmp_path):
    records = [AgeRecord(_face_jpeg(tmp_path / f"p{i}.jpg", i), 10.0, 10) for i in range(2)]
    out = tmp_path / "out"
    manifest = build.build_tfrecords(protocols.random_split(records, 0.5), records, _config(out), "tiny")
    assert build.ensure_verified(str(out)) is True
    assert build.ensure_verified(str(out)) is False  # cached: nothing changed
    shard = out / manifest["parts"]["train"]["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte flipped
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=f"{shard}: size or checksum differs"):
        build.ensure_verified(str(out))


def test_an_incomplete_build_log_fails_the_build(tmp_path, monkeypatch):
    records = [AgeRecord(_face_jpeg(tmp_path / f"p{i}.jpg", i), 10.0, 10) for i in range(3)]
    real = build._run_pipeline

    def loses_a_photo(parts, config, staging, *rest):
        real(parts, config, staging, *rest)
        log = os.path.join(staging, build.RECORD_LOG)
        lines = open(log).read().splitlines(keepends=True)
        open(log, "w").write("".join(lines[:-1]))

    monkeypatch.setattr(build, "_run_pipeline", loses_a_photo)
    with pytest.raises(RuntimeError, match="incomplete"):
        build.build_tfrecords(protocols.random_split(records, 0.4), records, _config(tmp_path / "out"), "tiny")
    assert not (tmp_path / "out").exists()


def test_the_build_is_moved_into_place_not_copied(tmp_path, monkeypatch):
    records = [AgeRecord(_face_jpeg(tmp_path / f"p{i}.jpg", i), 10.0, 10) for i in range(2)]
    real, staged = build._run_pipeline, {}

    def remember(parts, config, staging, *rest):
        staged["inode"] = os.stat(staging).st_ino
        real(parts, config, staging, *rest)

    monkeypatch.setattr(build, "_run_pipeline", remember)
    build.build_tfrecords(protocols.random_split(records, 0.5), records, _config(tmp_path / "out"), "tiny")
    assert os.stat(tmp_path / "out").st_ino == staged["inode"]  # one rename: readers see all of it or none


@pytest.mark.slow
def test_the_build_on_a_dask_cluster_equals_the_direct_runners_byte_for_byte(shared_data, tmp_path):
    """Beam's DaskRunner on a LocalCluster of 2 worker processes (TCP on loopback, as a real
    cluster), detection in the workers: the same shards, record log and manifest as the
    DirectRunner, byte for byte (only the build's date and duration differ)."""
    pytest.importorskip("distributed", reason="the Dask runner needs dask and distributed (the [data] extra)")
    pytest.importorskip("dlib", reason="dlib's detector (a dependency of keras-alage)")

    result = fgnet.read_fgnet(shared_data / "fgnet")
    subjects = sorted({r.subject for r in result.records})[1::20][:4]
    records = [r for s in subjects for r in [r for r in result.records if r.subject == s][:4]]  # 4 photos each
    split = protocols.subject_kfold(records, 2, seed=0)
    crop = faces.CropSpec(128, 0.6, detector="dlib")
    made = {}
    for runner in ("direct", "dask"):
        with runners.beam_args(runner, workers=2) as args:
            config = build.BuildConfig(str(tmp_path / runner), 70, crop, faces.FacePolicy(no_face="center"),
                                       records_per_shard=4, workers=2, beam_args=tuple(args))
            made[runner] = build.build_tfrecords(split, records, config, "fgnet")
    direct, dask = (tmp_path / "direct", tmp_path / "dask")
    names = sorted(os.listdir(direct))
    assert names == sorted(os.listdir(dask)) and sum(n.endswith(".tfrecord") for n in names) >= 4
    for name in names:
        if name != "manifest.json":
            assert (direct / name).read_bytes() == (dask / name).read_bytes(), name
    for manifest in made.values():
        manifest.pop("created"), manifest.pop("seconds")
    assert made["direct"] == made["dask"] and made["dask"]["records"] == len(records)
    build.verify_shards(str(dask))
    with pytest.raises(ValueError, match="runner must be one of"):
        with runners.beam_args("spark", workers=2):
            pass


def test_a_build_another_process_is_writing_is_refused_at_once(tmp_path):
    hold = ("import sys, time\nfrom alage_pipelines import files\n"
            "with files.place_lock(sys.argv[1], 'building TFRecords'):\n    print('holding', flush=True); time.sleep(120)\n")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path / "out")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(files.FolderBusy, match=f"out is in use by process {holder.pid}"):
            build.build_tfrecords(None, [], _config(tmp_path / "out"), "tiny")
    finally:
        holder.kill()
        holder.wait(timeout=60)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("damage, expected", [
    (lambda m: "", "is not valid JSON"),
    (lambda m: "[1, 2]", "holds a JSON list"),
    (lambda m: json.dumps({k: v for k, v in m.items() if k != "folds"}), "no folds"),
    (lambda m: json.dumps(dict(m, num_classes="101")), "'num_classes' a positive integer"),
    (lambda m: json.dumps(dict(m, folds={"split": {"train": ["elsewhere"], "test": ["test"]}})),
     "fold 'split' must hold train and test lists of its parts"),
    (lambda m: json.dumps(dict(m, parts={"train": {"records": 1}})), "part 'train' must list its shards"),
    (lambda m: "[" * 100_000 + "]" * 100_000, "nested too deep"),
])
def test_a_damaged_or_empty_manifest_is_one_error_naming_it(tmp_path, damage, expected):
    """evaluate.py on an empty or damaged manifest.json ended in a traceback (KeyError, TypeError)."""
    records = [AgeRecord(_face_jpeg(tmp_path / f"p{i}.jpg", i), 10.0, 10) for i in range(2)]
    out = tmp_path / "out"
    build.build_tfrecords(protocols.random_split(records, 0.5), records, _config(out), "tiny")
    assert build.Build.open(str(out)).folds == ["split"]
    (out / build.MANIFEST).write_text(damage(json.loads((out / build.MANIFEST).read_text())))
    with pytest.raises(ValueError) as info:
        build.Build.open(str(out))
    assert str(info.value).startswith(str(out / build.MANIFEST)) and expected in str(info.value), str(info.value)


# --- what a build prints ---------------------------------------------------------------------------

BEAM_WORDS = ("apache_beam", "apitools", "bigquery", "sdk_worker", "harness", "INFO:", "WARNING:", "Pipeline_options")


def test_a_build_says_each_stage_with_its_counts(tmp_path):
    records = [AgeRecord(_face_jpeg(tmp_path / f"p{i}.jpg", i), 10.0 + i, 10 + i) for i in range(5)]
    records.append(AgeRecord(str(tmp_path / "missing.jpg"), 30.0, 30))
    said = []
    manifest = build.build_tfrecords(protocols.random_split(records, 0.4), records,
                                     _config(tmp_path / "out", records_per_shard=2), "tiny", progress=said.append)
    shards = sum(len(part["shards"]) for part in manifest["parts"].values())
    assert said[0] == "cut: 6 photos, 1 worker process"
    assert said[-2].startswith("cut: 6/6 photos (100 %), 1 skipped, ")
    assert said[-1].startswith(f"write: 5 records in {shards} shards, checksummed and moved into place, ") and shards > 1
    assert not any(word in line for line in said for word in BEAM_WORDS)


def _left_in(temporary):
    """What a build left in a temporary folder, less TensorFlow's AutoGraph modules (the shard count's
    `reduce`), which TensorFlow removes as the process exits."""
    return sorted(name for name in os.listdir(temporary) if not name.startswith("__autograph_generated_file"))


def test_a_build_leaves_the_temporary_folder_as_it_found_it(tmp_path, monkeypatch):
    """Beam makes folders in Python's temporary folder that it never removes (a `tmp*` of each
    `python_sdk_dependencies`, a job server's `beam-temp*`, `beam-requirements-cache`): about 250
    were left in /tmp by the test suite."""
    temporary = tmp_path / "temporary"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    records = [AgeRecord(_face_jpeg(tmp_path / f"p{i}.jpg", i), 10.0, 10) for i in range(2)]
    build.build_tfrecords(protocols.random_split(records, 0.5), records, _config(tmp_path / "out"), "tiny")
    assert _left_in(temporary) == [] and tempfile.tempdir == str(temporary)


def test_a_failed_build_names_the_file_that_kept_beams_log(tmp_path, monkeypatch):
    """The log is kept in the temporary folder, outside the build's own (removed) one."""
    temporary = tmp_path / "temporary"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    records = [AgeRecord(_face_jpeg(tmp_path / f"p{i}.jpg", i), 10.0, 10) for i in range(2)]

    def broken(directory, name, records):
        raise OSError(28, "No space left on device", name)

    monkeypatch.setattr(build, "write_shard", broken)
    said = []
    with pytest.raises(Exception, match="No space left"):
        build.build_tfrecords(protocols.random_split(records, 0.5), records, _config(tmp_path / "out"), "tiny",
                              progress=said.append)
    log = said[-1].removeprefix("Beam's log of this build: ")
    assert said[-1] != log and os.path.isfile(log)
    assert _left_in(temporary) == [os.path.basename(log)] and os.path.dirname(log) == str(temporary)
    os.remove(log)
    assert not (tmp_path / "out").exists()


def test_a_failed_builds_log_outlives_the_private_folder_of_a_build_beside_it(tmp_path, monkeypatch):
    """Builds in threads share one private temporary folder, removed when the last ends: a log
    made while another build holds it is still made outside it."""
    temporary = tmp_path / "temporary"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    said = []
    with build.private_temporary_folder() as private:  # another build, running
        with pytest.raises(OSError):
            with build.beam_log(False, said.append):
                raise OSError(28, "No space left on device")
    log = said[-1].removeprefix("Beam's log of this build: ")
    assert not os.path.exists(private) and os.path.isfile(log) and os.path.dirname(log) == str(temporary)


@pytest.mark.slow
def test_the_build_command_prints_progress_and_no_beam_log_unless_verbose(tmp_path):
    """Two worker processes, as a user's build runs: Beam's runner and its workers (which inherit
    the terminal) printed 48 of a UTKFace build's 54 lines and nothing while it ran."""
    table = tmp_path / "faces.csv"
    table.write_text("path,age\n" + "".join(f"{_face_jpeg(tmp_path / f'p{i}.jpg', i)},{20 + i}\n" for i in range(6)))
    command = [sys.executable, "scripts/build_tfrecords.py", "--dataset=csv", f"--data_dir={table}", "--nodetect",
               "--workers=2", "--crop_size=32", f"--output_dir={tmp_path / 'out'}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = (result.stdout + result.stderr).splitlines()
    assert [line for line in lines if any(word in line for word in BEAM_WORDS)] == [], lines
    assert result.stderr == ""
    assert lines[0].startswith("read: ") and "6 records" in lines[0]
    assert "cut: 6 photos, 2 worker processes" in lines
    assert any(line.startswith("cut: 6/6 photos (100 %), 0 skipped, ") for line in lines)
    assert any(line.startswith("write: 6 records in ") for line in lines)
    assert len(lines) <= 12, lines
    verbose = subprocess.run(command + ["--verbose", "--overwrite"], cwd=REPO, capture_output=True, text=True,
                             timeout=600)
    assert verbose.returncode == 0 and "apache_beam" in verbose.stderr  # Beam's own log, where asked for
