"""What a user sees when the input is wrong: one line naming the flag or file, a non-zero exit.

The cases run the command in this process (`in_process.run_script`: the script itself, its exit
status and output, without a new interpreter and TensorFlow start-up each); those where the
process is the point (the status and lines a shell sees before any work, start-up noise, signals,
a traceback at exit) start one."""

import json
import os
import pathlib
import signal
import stat
import subprocess
import sys

import pytest

from keras_alage.models import release
from keras_alage.models.age_model import ModelConfig, build_age_model
from keras_alage.serving import outputs
from tests.cli import in_process

REPO = pathlib.Path(__file__).resolve().parents[2]


def run_script(name, *args, cwd=None, folder="scripts", own_process=False):
    if own_process:
        result = subprocess.run([sys.executable, str(REPO / folder / name), *args], capture_output=True, text=True,
                                timeout=300, cwd=cwd)
    else:
        result = in_process.run_script(name, *args, cwd=cwd, folder=folder)
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
    result, ours = run_script("predict.py", *args, "photo.jpg", own_process=True)
    assert_one_line(result, ours, expected)


@pytest.mark.slow
def test_a_command_prints_no_tensorflow_start_up_noise():
    result, ours = run_script("train.py", "--flagfile=no_such_experiment.flags", "--batch_size=2", own_process=True)
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
    names = [outputs.drawing_name(p, taken) for p in ("a/face.jpg", "a/face.png", "b/face.jpg", "b/face.png", "c/face.jpg")]
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


@pytest.mark.slow
def test_sigterm_while_a_slow_photo_is_in_the_detector_ends_predict_at_its_next_detector_call(tiny_model, tmp_path):
    """A faceless photo is a 28-call rotation search (16 s with MTCNN at the 1600 px bound; a
    100 Mpx one held dlib for minutes, and SIGTERM with it): the run ends at the next detector call,
    keeping the answer it had written. The detector's calls are counted (each logged as it starts),
    not timed: at most the call under way, and one starting as the signal lands, run after it."""
    import csv
    import time

    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "wall.png"), np.full((1600, 1600, 3), 120, np.uint8))
    table, calls = tmp_path / "ages.csv", tmp_path / "detector_calls"
    counted = (
        "import runpy, sys\n"
        "from alage_pipelines import faces\n"
        "real = faces.MtcnnDetector.detect\n"
        "def detect(self, image):\n"
        "    with open(%r, 'a') as log:\n"
        "        log.write('call\\n')\n"
        "    return real(self, image)\n"
        "faces.MtcnnDetector.detect = detect\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n" % str(calls)
    )

    def count():
        return len(calls.read_text().splitlines()) if calls.exists() else 0

    process = subprocess.Popen([sys.executable, "-c", counted, str(REPO / "scripts" / "predict.py"),
                                f"--model={tiny_model}", f"--output={table}", str(SAMPLE_PHOTO),
                                str(tmp_path / "wall.png")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while "face 0" not in process.stdout.readline():  # the sample is answered
            assert process.poll() is None, process.stderr.read()[-2000:]
        sample = count()
        while count() < sample + 2:  # the wall's search is under way
            assert process.poll() is None, process.stderr.read()[-2000:]
            time.sleep(0.05)
        at_signal = count()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)  # a hang guard only
    finally:
        process.kill()
    assert process.returncode == 130 and "predict.py: interrupted" in stderr and "Traceback" not in stderr
    assert count() - at_signal <= 2, f"{count() - at_signal} detector calls after SIGTERM (the search had ~25 left)"
    rows = list(csv.DictReader((tmp_path / "ages.csv.partial").open()))
    assert [r["path"] for r in rows] == [str(SAMPLE_PHOTO)] and not table.exists()


@pytest.mark.slow
def test_an_oversized_or_damaged_image_is_skipped_with_its_reason(tiny_model, tmp_path):
    import cv2
    import numpy as np

    ok, encoded = cv2.imencode(".tiff", np.zeros((12000, 12000), np.uint8))  # 144 Mpx, a few MB on disk
    (tmp_path / "big.jpg").write_bytes(encoded.tobytes())  # any name: the format is read from the bytes
    whole = SAMPLE_PHOTO.read_bytes()
    (tmp_path / "damaged.jpg").write_bytes(whole[: len(whole) // 2] + b"\xff\xd9")  # end marker kept
    # its own process: the size limit OpenCV reads once, as alage_pipelines sets it before OpenCV starts
    result, ours = run_script("predict.py", f"--model={tiny_model}", str(tmp_path), own_process=True)
    assert_one_line(result, ours, "no photo could be answered")
    assert "big.jpg: skipped (image exceeds the size limit" in result.stdout
    assert "damaged.jpg: skipped (damaged or unsupported JPEG" in result.stdout


@pytest.mark.slow
def test_a_full_or_read_only_disk_is_one_line_and_a_bug_keeps_its_traceback():
    code = ("import errno, sys\n"
            "from keras_alage import cli\n"
            "def main(argv):\n"
            "    raise OSError(errno.ENOSPC if sys.argv[1] == 'full' else errno.EBADF, 'No space left on device',\n"
            "                  '/data/out/shard-00001')\n"
            "cli.run(main, argv=['command.py', sys.argv[1]])\n")
    full = subprocess.run([sys.executable, "-c", code, "full"], capture_output=True, text=True, timeout=300)
    assert full.returncode == 2 and "Traceback" not in full.stderr
    assert full.stderr.strip().splitlines()[-1] == "-c: /data/out/shard-00001: No space left on device"
    bug = subprocess.run([sys.executable, "-c", code, "bug"], capture_output=True, text=True, timeout=300)
    assert bug.returncode == 1 and "Traceback" in bug.stderr
    writer = ("import tensorflow as tf\n"
              "from keras_alage import cli\n"
              "def main(argv):\n"
              "    raise tf.errors.ResourceExhaustedError(None, None, 'data/.out.building-1/train-00003.tfrecord; '\n"
              "                                           'No space left on device')\n"
              "cli.run(main, argv=['command.py'])\n")
    full = subprocess.run([sys.executable, "-c", writer], capture_output=True, text=True, timeout=300)
    assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr[-2000:]
    assert full.stderr.strip().splitlines()[-1] == (
        "-c: data/.out.building-1/train-00003.tfrecord; No space left on device")


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


# --- the fault table: each case is one line naming the culprit, exit 2, and nothing left behind ----


def _foreign_saved_model(tmp_path):
    import tensorflow as tf

    module = tf.Module()
    module.f = tf.function(lambda x: x + 1, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "foreign"), signatures={"serving_default": module.f})
    return [f"--model={tmp_path / 'foreign'}", str(SAMPLE_PHOTO)]


def _escaping_release(tmp_path):
    model = build_age_model(ModelConfig(depth=18, input_size=32, age_classes="fgnet"))
    release.save(model, str(tmp_path / "r"), ModelConfig(depth=18, input_size=32, age_classes="fgnet"), None, {})
    description = json.loads((tmp_path / "r" / "model.json").read_text())
    description["weights"]["file"] = "../../../../etc/passwd"
    (tmp_path / "r" / "model.json").write_text(json.dumps(description))
    return [f"--model={tmp_path / 'r'}", str(SAMPLE_PHOTO)]


def _conflicting_csv(tmp_path):
    (tmp_path / "ages.csv").write_text("path,age\na.jpg,30\na.jpg,31\n")
    return ["--dataset=csv", f"--data_dir={tmp_path / 'ages.csv'}", f"--output_dir={tmp_path / 'out'}"]


def _a_device_as_the_table(tmp_path):
    try:  # a device like /dev/null, made here: a regression never risks the machine's own
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device needs root")
    return [f"--output={tmp_path / 'null'}", "--overwrite", str(SAMPLE_PHOTO)]


def _a_table_in_progress_that_is_a_link(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(SAMPLE_PHOTO.read_bytes())
    os.symlink(tmp_path / "photo.jpg", tmp_path / "ages.csv.partial")
    return ["--output=ages.csv", str(SAMPLE_PHOTO)]


def _a_build_over_its_own_photos(tmp_path):
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "30_0_0_20170109150557335.jpg").write_bytes(SAMPLE_PHOTO.read_bytes())
    return ["--dataset=utkface", f"--data_dir={tmp_path / 'faces'}", f"--output_dir={tmp_path / 'faces'}", "--overwrite"]


HELD = []  # folder locks a case holds while its command runs, released after it


def _a_run_folder_training_holds(tmp_path):
    from alage_pipelines import files

    hold = files.folder_lock(str(tmp_path / "run"), "training")
    hold.__enter__()
    HELD.append(hold)
    return ["--data_dir=d", f"--run_dir={tmp_path / 'run'}"]


FAULTS = {
    "a zero batch": ("train.py", lambda t: ["--data_dir=d", f"--run_dir={t / 'run'}", "--batch_size=0"],
                     ["--batch_size must be at least 1"]),
    "a setting without its dashes": ("train.py", lambda t: ["--data_dir=d", f"--run_dir={t / 'run'}", "epochs=3"],
                                     ["unexpected arguments: epochs=3"]),
    "a zero face batch": ("predict.py", lambda t: ["--batch_faces=0", "x.jpg"], ["--batch_faces must be at least 1"]),
    "a SavedModel that is not ours": ("predict.py", _foreign_saved_model, ["without this project's serving signatures"]),
    "a description pointing outside its folder": ("predict.py", _escaping_release, ["outside its folder"]),
    "one photo with two ages": ("build_tfrecords.py", _conflicting_csv, ["--data_dir", "listed again with age 31"]),
    "a device as the table": ("predict.py", _a_device_as_the_table, ["null is a device", "only replaces a regular file"]),
    "a table in progress that is a link": ("predict.py", _a_table_in_progress_that_is_a_link,
                                           ["ages.csv.partial is a symbolic link"]),
    "a build over its own photos": ("build_tfrecords.py", _a_build_over_its_own_photos,
                                    ["--output_dir", "is one of the inputs", "--data_dir"]),
    "an unsupported depth": ("train.py", lambda t: ["--data_dir=d", f"--run_dir={t / 'run'}", "--depth=7"],
                             ["--depth=7 is not a ResNet depth", "18, 34, 50, 101, 152"]),
    "an evaluation of a folder training holds": ("evaluate.py", _a_run_folder_training_holds,
                                                 [f"is in use by process {os.getpid()}", "(training)"]),
}
SAMPLE_PHOTO = REPO / "samples" / "astronaut_eileen_collins.jpg"


def _tiny_release(tmp_path):
    config = ModelConfig(depth=18, input_size=32, age_classes="fgnet")
    release.save(build_age_model(config), str(tmp_path / "r"), config, None, {})
    return tmp_path / "r"


def _a_description_that_is_a_list(tmp_path):
    (_tiny_release(tmp_path) / "model.json").write_text("[1, 2]")
    return [f"--model={tmp_path / 'r'}", str(SAMPLE_PHOTO)]


def _a_description_nested_too_deep(tmp_path):
    (_tiny_release(tmp_path) / "model.json").write_text("[" * 100_000 + "]" * 100_000)
    return [f"--model={tmp_path / 'r'}", f"--export_dir={tmp_path / 'serving'}"]


def _weights_that_are_a_pipe(tmp_path):
    (_tiny_release(tmp_path) / "weights.npz").unlink()
    os.mkfifo(tmp_path / "r" / "weights.npz")  # opened, it would wait for a writer
    return [f"--model={tmp_path / 'r'}", str(SAMPLE_PHOTO)]


def _a_flagfile_that_is_a_pipe(tmp_path):
    os.mkfifo(tmp_path / "run.flags")
    return [f"--flagfile={tmp_path / 'run.flags'}"]


def _a_version_folder_that_is_a_link(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "serving" / "age").mkdir(parents=True)
    os.symlink(tmp_path / "elsewhere", tmp_path / "serving" / "age" / "1")
    return [f"--model={_tiny_release(tmp_path)}", f"--export_dir={tmp_path / 'serving'}", "--overwrite"]


def _a_keras_file_naming_an_unregistered_function(tmp_path):
    import zipfile

    build_age_model(ModelConfig(depth=18, input_size=32, age_classes="fgnet")).save(tmp_path / "ours.keras")
    with zipfile.ZipFile(tmp_path / "ours.keras") as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    (tmp_path / "ours.keras").unlink()
    foreign = {"module": "elsewhere", "class_name": "function", "config": "run_me", "registered_name": "Elsewhere>run_me"}
    parts["config.json"] = parts["config.json"].replace(b'"activation": "relu"',
                                                        b'"activation": ' + json.dumps(foreign).encode(), 1)
    with zipfile.ZipFile(tmp_path / "model.keras", "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return [f"--model={tmp_path / 'model.keras'}", f"--export_dir={tmp_path / 'serving'}"]


def _photos_asked_of_a_model_without_a_face_crop(tmp_path):
    build_age_model(ModelConfig(depth=18, input_size=32, age_classes="fgnet")).save(tmp_path / "model.keras")
    return [f"--model={tmp_path / 'model.keras'}", f"--export_dir={tmp_path / 'serving'}", "--photos"]


def _a_graph_under_our_names_taking_floats(tmp_path):
    import tensorflow as tf

    module = tf.Module()
    module.f = tf.function(lambda images: {"age": images}, input_signature=[tf.TensorSpec([None], tf.float32, "images")])
    tf.saved_model.save(module, str(tmp_path / "foreign"), signatures={"serving_default": module.f,
                                                                       "predict_preprocessed": module.f})
    return [f"--model={tmp_path / 'foreign'}", str(SAMPLE_PHOTO)]


def _an_empty_manifest(tmp_path):
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "manifest.json").write_text("")
    return [f"--data_dir={tmp_path / 'build'}", "--model=model.keras"]


FAULTS.update({
    "an evaluation of a build whose manifest is empty": ("evaluate.py", _an_empty_manifest,
                                                        ["build/manifest.json is not valid JSON"]),
    "a version TF Serving cannot read": ("export.py", lambda t: ["--model=m", "--version=99999999999999999999999"],
                                         ["--version must be at most 9223372036854775807"]),
    "a version folder that is a link": ("export.py", _a_version_folder_that_is_a_link,
                                        ["age/1 is a symbolic link; an export replaces only a version folder"]),
    "a .keras naming an unregistered function": ("export.py", _a_keras_file_naming_an_unregistered_function,
                                                 ["model.keras: Keras will not load it (Could not locate function "
                                                  "'run_me')"]),
    "--photos asked of a model without a face crop": ("export.py", _photos_asked_of_a_model_without_a_face_crop,
                                                      ["--photos:", "records no face crop", "--nophotos"]),
    "a SavedModel under our names taking floats": ("predict.py", _a_graph_under_our_names_taking_floats,
                                                   ["serving_default takes images float32", "not an export of this"]),
    "a description that is a list": ("predict.py", _a_description_that_is_a_list,
                                     ["--model=", "model.json holds a JSON list, not a model description"]),
    "a description nested 100,000 deep": ("export.py", _a_description_nested_too_deep,
                                          ["model.json is nested too deep to be a model description"]),
    "model weights that are a pipe": ("predict.py", _weights_that_are_a_pipe,
                                      ["--model=", "weights.npz is a pipe, not a regular file; refused."]),
    "a flagfile that is a pipe": ("train.py", _a_flagfile_that_is_a_pipe, ["run.flags is a pipe, not a regular file"]),
})


def test_a_starting_checkpoint_whose_description_lacks_its_weights_is_one_line(tmp_path):
    """train --init_checkpoint=<release> whose model.json has no "weights": a KeyError traceback before."""
    from alage_pipelines import protocols
    from tests.record_utils import synthetic_build

    rows = [(f"face{i:02d}.jpg", float(i), i, f"s{i % 4}", 40 + 4 * i) for i in range(16)]
    data = synthetic_build(tmp_path, rows, 70, lambda r: protocols.subject_kfold(r, 2, seed=0), "tiny")
    folder = _tiny_release(tmp_path)
    description = json.loads((folder / "model.json").read_text())
    del description["weights"]
    (folder / "model.json").write_text(json.dumps(description))
    result, ours = run_script("train.py", f"--data_dir={data}", f"--run_dir={tmp_path / 'run'}", "--depth=18",
                              "--input_size=32", "--batch_size=4", "--steps_per_epoch=1", "--epochs=1",
                              f"--init_checkpoint={folder}")
    assert_one_line(result, ours, f"--init_checkpoint={folder}", "model.json: no weights")


@pytest.mark.parametrize("case", sorted(FAULTS))
def test_each_fault_is_one_line_and_leaves_nothing_behind(case, tmp_path):
    script, arguments, expected = FAULTS[case]
    args = arguments(tmp_path)
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))  # what the case itself set up
    try:
        result, ours = run_script(script, *args, cwd=tmp_path)
    finally:
        while HELD:
            HELD.pop().__exit__(None, None, None)
    assert_one_line(result, ours, *expected)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == made, "the failed command left files"


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train.py", "evaluate.py"])
def test_a_record_damaged_in_place_after_the_build_was_verified_is_one_line_naming_its_shard(tiny_model, tmp_path,
                                                                                           command):
    """A bit flipped inside a shard, its size and time kept (the verification record still matches):
    training said "corrupted record at 247285" under a traceback; now the shard is named."""
    from alage_pipelines import build, protocols
    from tests.record_utils import synthetic_build

    rows = [(f"face{i:02d}.jpg", float(i), i, f"s{i % 4}", 40 + 4 * i) for i in range(16)]
    data = synthetic_build(tmp_path, rows, 70, lambda r: protocols.subject_kfold(r, 2, seed=0), "tiny")
    build.ensure_verified(str(data))  # what the first training did: the shards hashed and the state recorded
    side = "train" if command == "train.py" else "test"
    shard = pathlib.Path(build.Build.open(str(data)).fold_files("fold0", side)[0])
    before = shard.stat()
    payload = bytearray(shard.read_bytes())
    payload[len(payload) // 2] ^= 0x10
    shard.write_bytes(bytes(payload))
    os.utime(shard, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert not build.ensure_verified(str(data))  # the recorded state still matches: no hashing
    if command == "train.py":
        args = [f"--run_dir={tmp_path / 'run'}", "--depth=18", "--input_size=32", "--batch_size=4",
                "--steps_per_epoch=2", "--epochs=1", "--shuffle_buffer=64", "--eval_batch_size=4"]
    else:  # a model of this build's fold0, as its run.json says
        import shutil

        (tmp_path / "run").mkdir()
        shutil.copy(tiny_model, tmp_path / "run" / "model.keras")
        (tmp_path / "run" / "run.json").write_text(json.dumps({"build": build.Build.open(str(data)).identity,
                                                               "fold": "fold0"}))
        args = [f"--model={tmp_path / 'run' / 'model.keras'}", f"--output_dir={tmp_path / 'report'}", "--crops=center",
                "--batch_size=4"]
    result, ours = run_script(command, f"--data_dir={data}", "--fold=fold0", *args)
    assert_one_line(result, ours, f"{shard}: size or checksum differs from the build's manifest")
    assert not (data / build.VERIFIED).exists()  # the next run hashes again
