"""What a user sees when the input is wrong: one line naming the flag or file, a non-zero exit."""

import os
import pathlib
import signal
import subprocess
import sys

import pytest

from keras_alage.serving import photos

REPO = pathlib.Path(__file__).resolve().parents[2]


def run_script(name, *args, cwd=None, folder="scripts"):
    result = subprocess.run([sys.executable, str(REPO / folder / name), *args], capture_output=True, text=True,
                            timeout=300, cwd=cwd)
    # TensorFlow's own start-up chatter is not ours; what we print must be one line.
    ours = [line for line in result.stderr.splitlines() if line.startswith(f"{name}:")]
    return result, ours


def assert_one_line(result, ours, *expected):
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "--helpfull" not in result.stderr and "flags:" not in result.stderr
    assert len(ours) == 1, result.stderr[-2000:]
    for text in expected:
        assert text in ours[0], ours[0]


@pytest.mark.parametrize("args, expected", [(("--output_dir=x",), "Unknown command line flag 'output_dir'"),
                                            (("--batch_faces=many",), "--batch_faces")])
def test_an_unknown_flag_or_a_bad_value_is_one_line(args, expected):
    result, ours = run_script("predict.py", *args, "photo.jpg")
    assert_one_line(result, ours, expected)


def test_a_command_prints_no_tensorflow_start_up_noise():
    result, ours = run_script("train.py", "--flagfile=no_such_experiment.flags", "--batch_size=2")
    assert result.stderr.strip().splitlines() == ours, result.stderr[-2000:]  # our one line, nothing of TF's
    user = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "ALAGE_VERBOSE")}
    result = subprocess.run([sys.executable, "-c", "import keras_alage.cli, tensorflow as tf; tf.constant(1)"],
                            capture_output=True, text=True, timeout=300, env=user)  # a user's shell
    assert result.returncode == 0 and "cuInit" not in result.stderr and "I0000" not in result.stderr, result.stderr


def test_a_missing_flagfile_is_one_line():
    result, ours = run_script("train.py", "--flagfile=no_such_experiment.flags")
    assert_one_line(result, ours, "--flagfile: no_such_experiment.flags not found")


def test_a_missing_data_folder_is_one_line(tmp_path):
    result, ours = run_script("build_tfrecords.py", "--dataset=fgnet", f"--data_dir={tmp_path / 'nowhere'}",
                              f"--output_dir={tmp_path / 'out'}")
    assert_one_line(result, ours, "--data_dir for fgnet", "does not exist")


def test_a_folder_of_the_wrong_data_set_builds_nothing(tmp_path):
    (tmp_path / "photos").mkdir()
    for name in ("001A02.JPG", "001A05.JPG"):  # FG-NET names where UTKFace is expected
        (tmp_path / "photos" / name).write_bytes(b"\xff\xd8\xff\xd9")
    result, ours = run_script("build_tfrecords.py", "--dataset=utkface", f"--data_dir={tmp_path / 'photos'}",
                              f"--output_dir={tmp_path / 'out'}")
    assert_one_line(result, ours, "found no usable photo", "2 dropped")
    assert not (tmp_path / "out").exists()


def test_training_on_something_that_is_not_a_build_is_one_line(tmp_path):
    result, ours = run_script("train.py", f"--data_dir={tmp_path}", f"--run_dir={tmp_path / 'run'}")
    assert_one_line(result, ours, "is not a TFRecord build")


def test_predict_fails_when_no_photo_could_be_answered(tiny_model, tmp_path):
    (tmp_path / "notes.txt").write_text("not a photo")
    result, ours = run_script("predict.py", f"--model={tiny_model}", str(tmp_path / "notes.txt"))
    assert_one_line(result, ours, "no photo could be answered")
    assert "notes.txt: skipped" in result.stdout


def test_export_refuses_warmup_files_that_are_not_images(tiny_model, tmp_path):
    (tmp_path / "warm.txt").write_text("not an image")
    result, ours = run_script("export.py", f"--model={tiny_model}", f"--export_dir={tmp_path / 'serving'}",
                              f"--warmup_images={tmp_path / 'warm.txt'}")
    assert_one_line(result, ours, "--warmup_images", "warm.txt")
    assert not (tmp_path / "serving").exists()


def test_drawn_photos_never_share_a_name():
    taken = set()
    names = [photos.drawing_name(p, taken) for p in ("a/face.jpg", "a/face.png", "b/face.jpg", "b/face.png", "c/face.jpg")]
    assert len(set(names)) == 5 and names[:2] == ["face.jpg", "face.png.jpg"]


def test_sigterm_ends_a_script_like_ctrl_c_so_its_cleanup_runs(tmp_path):
    marker = tmp_path / "cleaned"
    code = (
        "import time\n"
        "from keras_alage import cli\n"
        "def main(argv):\n"
        "    try:\n"
        "        print('ready', flush=True); time.sleep(60)\n"
        "    finally:\n"
        "        open(%r, 'w').close()\n"
        "cli.run(main)\n" % str(marker)
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in stderr
    assert marker.exists()


def test_choose_release_names_the_run_weight_and_crops_or_the_missing_report(tmp_path):
    """experiments/release_v3_model.sh reads "<run> <weight> <crops>" from it; a view not yet
    evaluated is one line naming its report."""
    import json

    def report(folder, maes):
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps({"folds": {"split": {"count": 10, "local_weight_mae": maes}}}))

    for run, built, old in (("a", 6.0, 9.0), ("b", 5.5, 9.0)):
        report(tmp_path / run / "held_out_as_built", {"0": built, "1": built})
        report(tmp_path / run / "held_out_old_photo", {"0": old, "1": old})
        report(tmp_path / run / "held_out_as_built_center_flip", {"0": built - 0.2, "1": built - 0.3})
        report(tmp_path / run / "held_out_old_photo_center_flip", {"0": old, "1": old})
    runs = [str(tmp_path / "a"), str(tmp_path / "b")]
    result = subprocess.run([sys.executable, str(REPO / "experiments" / "choose_release.py"),
                             "--crops=center,center_flip", f"--output={tmp_path / 'choice'}", *runs],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == [runs[1], "1", "center_flip"]
    chosen = json.loads((tmp_path / "choice.json").read_text())["chosen"]
    assert chosen == {"run": runs[1], "crops": "center_flip", "local_weight": 1.0}
    result, ours = run_script("choose_release.py", "--crops=center,shift_flip", *runs, folder="experiments")
    assert_one_line(result, ours, "held_out_as_built_shift_flip", "not found")
