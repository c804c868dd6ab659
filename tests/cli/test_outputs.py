"""predict never destroys what it was given: drawings never take an input's name, an existing table
is kept unless --overwrite, the table is written as answers come, and its cells are spreadsheet-safe."""

import csv
import errno
import hashlib
import os
import pathlib
import signal
import stat
import subprocess
import sys

import cv2
import numpy as np
import pytest

from keras_alage.serving import answers, outputs, photos, video
from alage_pipelines import faces, files

REPO = pathlib.Path(__file__).resolve().parents[2]


def predict(*args, cwd=None):
    return subprocess.run([sys.executable, str(REPO / "scripts" / "predict.py"), *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd)


def digest(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


@pytest.fixture()
def chips(tmp_path):
    """Two ready-made 'chips' (no detector finds a face in noise: answered whole) in one folder."""
    folder = tmp_path / "chips"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "=cmd.jpg"):
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (80, 80, 3), dtype=np.uint8))
    return folder


@pytest.mark.slow
def test_drawing_into_the_photos_folder_keeps_the_originals_and_an_existing_table(tiny_model, chips, tmp_path):
    before = {p.name: digest(p) for p in chips.iterdir()}
    table = tmp_path / "ages.csv"
    result = predict(f"--model={tiny_model}", "--crops=center", "--no_face=whole", "--draw=.",
                     f"--output={table}", "a.jpg", "=cmd.jpg", cwd=chips)  # drawings go where the photos are
    assert result.returncode == 0, result.stderr[-2000:]
    assert {p.name: digest(p) for p in chips.iterdir() if p.name in before} == before  # originals untouched
    drawn = sorted(set(p.name for p in chips.iterdir()) - set(before))
    assert len(drawn) == 2 and not set(drawn) & set(before), drawn
    assert sorted(r["path"] for r in csv.DictReader(table.open())) == ["'=cmd.jpg", "a.jpg"]  # never a formula
    kept = digest(table)
    again = predict(f"--model={tiny_model}", "--crops=center", "--no_face=whole", f"--output={table}", str(chips))
    assert again.returncode == 2 and "--output" in again.stderr and "--overwrite" in again.stderr
    assert "Traceback" not in again.stderr and digest(table) == kept
    replaced = predict(f"--model={tiny_model}", "--crops=center", "--no_face=whole", f"--output={table}",
                       "--overwrite", str(chips / "a.jpg"))
    assert replaced.returncode == 0 and len(list(csv.DictReader(table.open()))) == 1


@pytest.mark.slow
def test_the_table_cannot_be_an_input_nor_go_where_no_folder_can_be(tiny_model, chips, tmp_path):
    photo = chips / "a.jpg"
    kept = digest(photo)
    result = predict(f"--model={tiny_model}", f"--output={photo}", "--overwrite", str(photo))
    assert result.returncode == 2 and "is one of the inputs" in result.stderr and digest(photo) == kept
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    result = predict(f"--model={tiny_model}", f"--draw={blocker / 'drawn'}", str(photo))
    assert result.returncode == 2 and "--draw" in result.stderr and "Traceback" not in result.stderr


def test_names_never_collide_and_cells_are_never_formulas(tmp_path):
    taken = outputs.inputs_in(str(tmp_path), [str(tmp_path / "clip.mp4")])
    assert outputs.drawing_name("a/clip.mp4", taken, ".mp4") == "clip.mp4.mp4"  # the input keeps its name
    assert outputs.drawing_name("b/clip.mp4", taken, ".mp4") == "clip-2.mp4"
    assert [outputs.spreadsheet_safe(c) for c in ("=HYPERLINK()", "+1", "-2", "@x", "a.jpg", 3.5, "")] == [
        "'=HYPERLINK()", "'+1", "'-2", "'@x", "a.jpg", "3.5", ""]
    # a tab or carriage return first makes some spreadsheets read the rest of the cell as a formula
    assert [outputs.spreadsheet_safe(c) for c in ("\t=1+1", "\r=1+1")] == ["'\t=1+1", "'\r=1+1"]


def test_an_interrupted_run_keeps_every_answer_it_wrote(tmp_path):
    path = tmp_path / "ages.csv"
    writer = outputs.results_writer(str(path))
    writer.add(photos.PhotoResult("one.jpg", [], error="no face found"))
    # killed here: the answer so far is on disk, the table itself is not half-written
    assert not path.exists()
    assert (tmp_path / "ages.csv.partial").read_text().splitlines()[1].startswith("one.jpg,")
    writer.add(photos.PhotoResult("two.jpg", [], error="no face found"))
    writer.close()
    assert [r["path"] for r in csv.DictReader(path.open())] == ["one.jpg", "two.jpg"]
    assert not (tmp_path / "ages.csv.partial").exists()


@pytest.mark.slow
def test_sigterm_ends_predict_within_seconds_and_keeps_the_answers_so_far(tmp_path):
    photo = REPO / "samples" / "astronaut_eileen_collins.jpg"
    table = tmp_path / "ages.csv"
    command = [sys.executable, str(REPO / "scripts" / "predict.py"), f"--output={table}", "--batch_faces=1",
               *[str(photo)] * 200]  # far more than it answers before the signal
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while "face 0" not in process.stdout.readline():  # the first answer is out
            assert process.poll() is None, process.stderr.read()[-2000:]
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)  # a hang guard, not a speed check
    finally:
        process.kill()
    assert process.returncode == 130 and "predict.py: interrupted" in stderr.splitlines() and "Traceback" not in stderr
    assert not table.exists()  # never a table that looks finished
    rows = list(csv.DictReader((tmp_path / "ages.csv.partial").open()))
    assert 1 <= len(rows) < 200 and all(r["path"] == str(photo) for r in rows)


# --- in process: a stand-in detector and network, so that only the outputs are under test ---------


class TwoFaces:
    """Finds two upright faces in any photo (left and right)."""

    name = "stand-in"

    def detect(self, image):
        h, w = image.shape[:2]
        return [(w * 0.1, h * 0.2, w * 0.3, h * 0.4, 0.99), (w * 0.6, h * 0.2, w * 0.3, h * 0.4, 0.99)]


class Network:
    """Answers 30 years for every face, or inf for those `refuse` picks; counts the faces it saw."""

    def __init__(self, refuse=lambda i: False):
        self.refuse, self.faces = refuse, 0

    def __call__(self, encoded):
        n = int(encoded.shape[0])
        ages = np.array([np.inf if self.refuse(self.faces + i) else 30.0 for i in range(n)])
        self.faces += n
        return {"age": ages, "age_std": np.ones(n), "global_age": np.full(n, 30.0), "local_age": np.full(n, np.nan),
                "box": np.zeros((n, 4))}


def answer(inputs, table=None, drawings=None, network=None, **settings):
    network = network or Network()
    lines = []
    options = {k: settings.pop(k) for k in ("min_confidence", "no_face", "batch_faces") if k in settings}
    answerer = photos.Answerer(photos.Predictor(network, 32), TwoFaces(), faces.CropSpec(size=40), **options)
    summary = answers.answer_inputs([str(p) for p in inputs], answerer,
                                    answers.Outputs(table and str(table), drawings and str(drawings)),
                                    log=lines.append, **settings)
    return summary, lines, network


class CountedNetwork(Network):
    """`Network`, recording how many faces each call answered."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __call__(self, encoded):
        self.calls.append(int(encoded.shape[0]))
        return super().__call__(encoded)


def test_the_answerers_options_reach_every_photo_it_answers(four):
    """One `photos.Answerer` carries the face path's options whole through `answers.answer_inputs`:
    its batch size is the network's calls, its no-face policy answers the photos without a face."""
    network = CountedNetwork()
    summary, _, _ = answer(four, network=network, batch_faces=1)
    assert network.calls == [1] * 8 and summary.photos == 4 and not summary.skipped

    class NoFaces(TwoFaces):
        def detect(self, image):
            return []

    for no_face, faceless in (("skip", 4), ("whole", 0)):
        lines = []
        answerer = photos.Answerer(photos.Predictor(Network(), 32), NoFaces(), faces.CropSpec(size=40),
                                   no_face=no_face)
        summary = answers.answer_inputs([str(p) for p in four], answerer, log=lines.append)
        assert summary.faceless == faceless and summary.photos == 4, lines
        assert sum("(no face found: the whole photo)" in line for line in lines) == 4 - faceless


@pytest.fixture()
def four(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.jpg", "b.jpg", "=c.jpg", "d.jpg"):
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))
    return sorted(folder.iterdir())


def a_device(path):
    """A character device like /dev/null at `path` (root makes one; the test never risks the real one)."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device needs root")
    return path


def test_a_device_a_pipe_or_a_link_is_never_replaced_by_the_table(four, tmp_path):
    null = a_device(tmp_path / "null")
    with pytest.raises(FileExistsError, match="null is a device"):
        answer(four, null, overwrite=True)
    os.mkfifo(tmp_path / "pipe.csv")
    with pytest.raises(FileExistsError, match="pipe.csv is a pipe"):
        answer(four, tmp_path / "pipe.csv", overwrite=True)
    assert stat.S_ISCHR(os.lstat(null).st_mode) and stat.S_ISFIFO(os.lstat(tmp_path / "pipe.csv").st_mode)


def test_a_partial_table_that_is_a_link_is_refused_and_its_target_kept(four, tmp_path):
    kept = digest(four[0])
    os.symlink(four[0], tmp_path / "ages.csv.partial")  # anyone can aim a link in a shared folder
    with pytest.raises(FileExistsError, match="ages.csv.partial is a symbolic link"):
        answer(four, tmp_path / "ages.csv")
    with pytest.raises(FileExistsError, match="ages.csv.partial is a symbolic link"):
        outputs.results_writer(str(tmp_path / "ages.csv"))  # the writer itself refuses it too
    assert digest(four[0]) == kept and not (tmp_path / "ages.csv").exists()


def test_one_writer_per_table(four, tmp_path):
    table = tmp_path / "ages.csv"
    first = outputs.results_writer(str(table), [str(p) for p in four])
    try:
        with pytest.raises(files.FolderBusy, match=f"ages.csv is in use by process {os.getpid()}"):
            answer(four, table)
    finally:
        first.release()
    assert (tmp_path / "ages.csv.partial").read_bytes() == outputs.CSV_HEADER  # the second wrote nothing
    answer(four, table)  # released: the next run writes it
    assert len(list(csv.DictReader(table.open()))) == 8


def test_a_rerun_resumes_an_interrupted_table_and_drops_its_torn_row(four, tmp_path):
    whole, _, _ = answer(four, tmp_path / "whole.csv")  # the run nothing interrupted
    table = tmp_path / "ages.csv"
    writer = outputs.results_writer(str(table), [str(p) for p in four])
    answerer = photos.Answerer(photos.Predictor(Network(), 32), TwoFaces(), faces.CropSpec(size=40))
    for result in photos.answer_photos([str(p) for p in four[:3]], answerer):
        writer.add(result)
    writer.release()  # killed: three photos answered, the third one's second row torn (its first is whole)
    partial = tmp_path / "ages.csv.partial"
    partial.write_bytes(partial.read_bytes()[:-7])
    summary, lines, network = answer(four, table)
    assert f"{partial}: 2 photo(s) answered by an interrupted run kept; answering the rest" in lines
    assert summary.kept == 2 and summary.photos == 2 and network.faces == 4  # the torn photo is answered again
    assert table.read_bytes() == (tmp_path / "whole.csv").read_bytes()  # no answer lost, none twice, no torn row
    assert not partial.exists() and whole.photos == 4


def test_a_partial_table_of_other_photos_or_not_ours_is_refused_before_anything_is_written(four, tmp_path):
    table = tmp_path / "ages.csv"
    answer(four[:3], tmp_path / "done.csv")
    partial = tmp_path / "ages.csv.partial"
    partial.write_bytes((tmp_path / "done.csv").read_bytes())
    before = partial.read_bytes()
    with pytest.raises(FileExistsError, match="answers photos this run was not given .*=c.jpg"):
        answer(four[1:], table)
    partial.write_bytes(b"name,notes\r\nmine,keep\r\n")
    with pytest.raises(FileExistsError, match="is not a table this command writes"):
        answer(four, table)
    assert partial.read_bytes() == b"name,notes\r\nmine,keep\r\n"
    partial.write_bytes(before)
    summary, lines, _ = answer(four, table, prior={"smoothing": 1.0})  # a prior needs every photo: starts over, says so
    assert any("are answered again (--adapt_prior" in line for line in lines) and summary.photos == 4


def test_a_full_disk_leaves_no_torn_row_and_names_the_table(four, tmp_path, monkeypatch):
    table = tmp_path / "ages.csv"
    writer = outputs.results_writer(str(table), [str(p) for p in four])
    answerer = photos.Answerer(photos.Predictor(Network(), 32), TwoFaces(), faces.CropSpec(size=40))
    results = list(photos.answer_photos([str(p) for p in four], answerer))
    writer.add(results[0])
    whole = (tmp_path / "ages.csv.partial").read_bytes()
    real = os.pwrite

    def fills_half_way(handle, data, offset):  # the disk fills in the middle of the photo's rows
        real(handle, bytes(data[: len(data) // 2]), offset)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(photos.os, "pwrite", fills_half_way)
    with pytest.raises(OSError, match="No space left") as raised:
        writer.add(results[1])
    writer.release()
    assert raised.value.filename == str(tmp_path / "ages.csv.partial")
    assert (tmp_path / "ages.csv.partial").read_bytes() == whole


def test_a_non_finite_answer_is_refused_per_face_and_counted(four, tmp_path):
    table = tmp_path / "ages.csv"
    summary, lines, _ = answer(four[:2], table, network=Network(refuse=lambda i: i in (1, 2, 3)))
    assert lines[0].endswith("face 0: 30.0 +-1.0 years, face 1: refused (the model answered age inf)")
    assert lines[1].endswith("face 0: refused (the model answered age inf), face 1: refused (the model answered age inf)")
    assert summary.refused_faces == 3 and summary.skipped == 1  # a photo with no face answered is skipped
    assert "3 face(s) refused: the model answered them with a number that is not finite" in lines
    rows = list(csv.DictReader(table.open()))
    assert [(r["age"], r["error"]) for r in rows] == [("30.00", ""), ("", "the model answered age inf"),
                                                      ("", "the model answered age inf"), ("", "the model answered age inf")]
    assert "inf" not in "".join(lines[:2]).replace("answered age inf", "")
    everything, _, _ = answer(four[:1], network=Network(refuse=lambda i: True))
    assert everything.answered_nothing  # predict then ends in "no photo could be answered"


def test_a_drawing_never_replaces_a_file_it_did_not_write_nor_the_table(four, tmp_path):
    drawn = tmp_path / "drawn"
    drawn.mkdir()
    (drawn / "a.jpg").write_bytes(b"the user's own photo, named like a drawing")
    os.symlink(four[1], drawn / "b.jpg")  # a link named like a drawing: never written through
    table = drawn / "d.jpg"  # a table named like a drawing
    _, lines, _ = answer(four, table, drawn)
    assert (drawn / "a.jpg").read_bytes() == b"the user's own photo, named like a drawing"
    assert f"{drawn / 'a.jpg'} is not a drawing of this command: kept; drawn as a.jpg.jpg" in lines
    assert f"{drawn / 'b.jpg'} is not a drawing of this command: kept; drawn as b.jpg.jpg" in lines
    assert list(csv.DictReader(table.open()))[0]["path"] == str(four[0])  # still the table, not a drawing
    assert sorted(p.name for p in drawn.iterdir()) == [".d.jpg.lock", "=c.jpg", "a.jpg", "a.jpg.jpg", "b.jpg",
                                                      "b.jpg.jpg", "d.jpg", "d.jpg.jpg"]
    assert all(outputs.is_drawing(str(drawn / n)) for n in ("a.jpg.jpg", "b.jpg.jpg", "=c.jpg", "d.jpg.jpg"))
    assert (drawn / "=c.jpg").stat().st_mode & 0o777 == 0o644
    answer(four, table, drawn, overwrite=True)  # a rerun replaces its own drawings: no second copy
    assert len(list(drawn.iterdir())) == 8


def test_a_drawn_video_and_its_tracks_take_a_name_free_for_both(tmp_path):
    (tmp_path / "clip.tracks.csv").write_text("the user's notes")
    lines, taken = [], set()
    path = outputs.drawing_path(str(tmp_path), "clip.mp4", taken, ".mp4", lines.append, companion=".tracks.csv")
    assert path == str(tmp_path / "clip.mp4.mp4") and {"clip.mp4.mp4", "clip.mp4.tracks.csv"} <= taken
    assert lines == [f"{tmp_path / 'clip.mp4'} is not a drawing of this command: kept; drawn as clip.mp4.mp4"]


def test_a_refused_face_takes_no_part_in_the_populations_prior():
    ages = np.arange(10, dtype=float)
    prior = {"source": np.full(10, 0.1), "smoothing": 1.0, "class_ages": ages}
    rng = np.random.default_rng(0)

    def face(i, refused=False):
        return photos.FaceAge(i, None if refused else 4.5, 1.0, None if refused else 4.5, None, 0.9, "upright", [], None,
                              error="the model answered age nan" if refused else None)

    results = []
    for i in range(6):
        probs = rng.dirichlet(np.ones(10), size=2)
        if i == 2:
            probs[1] = np.nan  # what a network answering nan gives
        results.append(photos.PhotoResult(f"p{i}.jpg", [face(0), face(1, refused=i == 2)], probs=probs))
    moved = photos.adapt_to_population(results, prior)
    answered = [f for r in moved for f in r.faces if f.error is None]
    assert len(answered) == 11 and all(np.isfinite(f.age) and f.prior_faces == 11 for f in answered)
    assert moved[2].faces[1] == results[2].faces[1] and moved[2].probs.shape == (1, 10)


def test_a_drawn_video_and_its_tracks_are_0644(tmp_path):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (120, 90))
    rng = np.random.default_rng(2)
    for _ in range(3):
        writer.write(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))
    writer.release()
    lines = []
    answerer = photos.Answerer(photos.Predictor(Network(), 32), TwoFaces(), faces.CropSpec(size=40))
    assert answers.answer_video(str(clip), answerer, answers.Outputs(drawings=str(tmp_path / "drawn")), None,
                                lines.append)
    drawn = sorted((tmp_path / "drawn").iterdir())
    assert [p.name for p in drawn] == sorted([f"clip{video.drawn_codec().extension}", "clip.tracks.csv"]), lines
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in drawn)
