"""predict never destroys what it was given: drawings never take an input's name, an existing table
is kept unless --overwrite, the table is written as answers come, and its cells are spreadsheet-safe."""

import csv
import hashlib
import pathlib
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from keras_alage.serving import photos

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
    taken = photos.inputs_in(str(tmp_path), [str(tmp_path / "clip.mp4")])
    assert photos.drawing_name("a/clip.mp4", taken, ".mp4") == "clip.mp4.mp4"  # the input keeps its name
    assert photos.drawing_name("b/clip.mp4", taken, ".mp4") == "clip-2.mp4"
    assert [photos.spreadsheet_safe(c) for c in ("=HYPERLINK()", "+1", "-2", "@x", "a.jpg", 3.5, "")] == [
        "'=HYPERLINK()", "'+1", "'-2", "'@x", "a.jpg", "3.5", ""]


def test_an_interrupted_run_keeps_every_answer_it_wrote(tmp_path):
    path = tmp_path / "ages.csv"
    writer = photos.ResultsWriter(str(path))
    writer.add(photos.PhotoResult("one.jpg", [], error="no face found"))
    # killed here: the answer so far is on disk, the table itself is not half-written
    assert not path.exists()
    assert (tmp_path / "ages.csv.partial").read_text().splitlines()[1].startswith("one.jpg,")
    writer.add(photos.PhotoResult("two.jpg", [], error="no face found"))
    writer.close()
    assert [r["path"] for r in csv.DictReader(path.open())] == ["one.jpg", "two.jpg"]
    assert not (tmp_path / "ages.csv.partial").exists()


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
