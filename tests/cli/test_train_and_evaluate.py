"""scripts/train.py and scripts/evaluate.py as a user runs them: resume after a kill,
TensorBoard event files, two workers under MultiWorkerMirroredStrategy, the report."""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import cv2
import pytest
import tensorflow as tf

from keras_alage.training import run_files
from alage_pipelines import build, protocols
from alage_pipelines.age_classes import get_age_classes
from tests.record_utils import event_tags, synthetic_build

pytest.importorskip("apache_beam")
pytestmark = pytest.mark.slow  # every case trains or evaluates through the commands on a real build
REPO = pathlib.Path(__file__).resolve().parents[2]
GROUP_AGES = get_age_classes("adience").values


@pytest.fixture(scope="module")
def tiny_build(tmp_path_factory):
    """A real build (Beam, no detection) of 48 synthetic faces in 8 age groups, 2 folds."""
    rows = [(f"face{i:02d}.jpg", GROUP_AGES[i % 8], i % 8, f"s{i % 6}", 30 + 25 * (i % 8)) for i in range(48)]
    return synthetic_build(tmp_path_factory.mktemp("faces"), rows, 8, lambda r: protocols.subject_kfold(r, 2, seed=0),
                           "tiny")


def _train_command(data_dir, run_dir, *extra, steps=3):
    return [
        sys.executable, str(REPO / "scripts" / "train.py"), f"--data_dir={data_dir}", f"--run_dir={run_dir}",
        "--age_classes=adience", "--depth=18", "--input_size=32", "--batch_size=8",
        *([f"--steps_per_epoch={steps}"] if steps else []), "--learning_rate=0.01", "--lr_decay_epochs=3",
        "--eval_crops=center", "--eval_batch_size=8", "--shuffle_buffer=64", *extra,
    ]


def _env(**extra):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.update(extra)
    return env


def _history(run_dir, fold="fold0"):
    path = run_dir / fold / "history.jsonl"
    return [json.loads(l) for l in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def resumed_run(tiny_build, tmp_path_factory):
    """Both folds in turn, 4 epochs each, killed with SIGKILL after fold0's second epoch,
    then rerun to the end."""
    run_dir = tmp_path_factory.mktemp("run")
    command = _train_command(tiny_build, run_dir, "--epochs=4", "--fold=all")
    first = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while len(_history(run_dir)) < 2:
        assert first.poll() is None, first.stdout.read().decode()[-3000:]
        assert time.time() < deadline, "training made no progress"
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = len(_history(run_dir))
    second = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return run_dir, killed_at, second.stdout


def test_a_killed_run_resumes_without_losing_or_repeating_an_epoch(resumed_run):
    run_dir, killed_at, log = resumed_run
    assert 2 <= killed_at < 4
    assert [h["epoch"] for h in _history(run_dir)] == [1, 2, 3, 4]
    # The rerun starts after fold0's last checkpoint: epoch 1 is trained once more only
    # for fold1.
    assert log.count("epoch 1 -") == 1 and log.index("fold fold1") < log.index("epoch 1 -")
    # Output to a pipe or a log file gets a line per epoch and no progress bar.
    assert "\x1b" not in log and "\r" not in log and "\u2501" not in log, log[-2000:]
    fold = run_dir / "fold0"
    assert tf.train.latest_checkpoint(str(fold / "checkpoints")).endswith("ckpt-4")
    for name in ("model.keras", "best.weights.h5", "evaluation.json", "history.jsonl"):
        assert (fold / name).exists(), name
    left = [p for pattern in run_files.LEFTOVERS for p in fold.glob(pattern)]
    assert not left, f"the kill's leftovers are still there: {left}"
    flags_text = (run_dir / "flags.txt").read_text()
    assert "--epochs=4" in flags_text and "--stage=global" in flags_text
    rates = [h["learning_rate"] for h in _history(run_dir)]
    assert rates == pytest.approx([0.01, 0.01, 0.01, 0.001])
    assert [h["epoch"] for h in _history(run_dir, "fold1")] == [1, 2, 3, 4]
    report = json.loads((run_dir / "results.json").read_text())
    assert sorted(report["folds"]) == ["fold0", "fold1"] and report["aggregate"]["folds"] == 2
    assert report["aggregate"]["count"] == 48  # every image tested once across the folds


def test_tensorboard_has_per_epoch_scalars_and_attention_box_images(resumed_run):
    run_dir, _, _ = resumed_run
    logs = run_dir / "fold0" / "logs"
    assert {"loss", "accuracy", "mae", "combined_mae", "learning_rate"} <= event_tags(logs / "train")
    assert {"loss", "accuracy", "mae", "combined_mae", "attention_boxes"} <= event_tags(logs / "validation")


def test_evaluate_script_reports_the_protocol_table(resumed_run, tiny_build, tmp_path):
    run_dir, _, _ = resumed_run
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "evaluate.py"), f"--data_dir={tiny_build}", "--fold=fold0",
         f"--run_dir={run_dir}", f"--output_dir={tmp_path}", "--crops=ten", "--batch_size=8"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "results.json").read_text())
    fold = report["folds"]["fold0"]
    assert fold["count"] == 24 and {"global", "local", "combined"} <= set(fold)
    assert "exact_accuracy" in fold["combined"] and "one_off_accuracy" in fold["combined"]
    assert "| fold0 | 24 |" in (tmp_path / "results.md").read_text()
    bad = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "evaluate.py"), f"--data_dir={tiny_build}", "--fold=fold7",
         f"--model={run_dir / 'fold0' / 'model.keras'}"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert bad.returncode != 0 and "fold7" in bad.stderr


def test_attention_stage_starts_each_fold_from_its_own_global_model(resumed_run, tiny_build, tmp_path):
    run_dir, _, _ = resumed_run
    checkpoint = f"--init_checkpoint={run_dir}/{{fold}}/model.keras"
    attention = tmp_path / "attention"
    result = subprocess.run(
        _train_command(tiny_build, attention, "--stage=attention", "--epochs=1", "--fold=all",
                       "--steps_per_epoch=1", checkpoint),
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for fold in ("fold0", "fold1"):
        assert f"initialised from {run_dir}/{fold}/model.keras" in result.stdout + result.stderr

    staged = tmp_path / "staged"  # the layout of experiments/cpu_fgnet.sh: <run>/global, <run>/attention
    staged.mkdir()
    (staged / "global").symlink_to(run_dir)
    (staged / "attention").symlink_to(attention)
    report = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "report_experiment.py"), f"--data_dir={tiny_build}",
         f"--run=tiny={staged}", f"--output={tmp_path / 'docs' / 'report.md'}",
         f"--grid={tmp_path / 'docs' / 'boxes.png'}", "--grid_images=6", "--grid_columns=3"],
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert report.returncode == 0, report.stderr[-3000:]
    text = (tmp_path / "docs" / "report.md").read_text()
    assert "| mean-age predictor | - |" in text and "| tiny | combined (attention stage) |" in text
    assert "![attention boxes](boxes.png)" in text
    assert cv2.imread(str(tmp_path / "docs" / "boxes.png")).shape == (2 * 64, 3 * 64, 3)  # 32 px faces, x2
    missing = subprocess.run(
        _train_command(tiny_build, tmp_path / "other", "--stage=attention", "--fold=all",
                       f"--init_checkpoint={tmp_path}/nowhere/{{fold}}/model.keras"),
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert missing.returncode != 0
    assert f"{tmp_path}/nowhere/fold0/model.keras" in missing.stderr and "does not exist" in missing.stderr


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _worker_configs(count=2):
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(count)]}
    return [json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}}) for i in range(count)]


def _start_workers(commands, configs):
    return [subprocess.Popen(c, cwd=REPO, env=_env(TF_CONFIG=t), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True) for c, t in zip(commands, configs)]


def _finish_workers(processes, timeout=300):
    """Each worker's output once all have ended; none is left running (workers that disagree
    can hang in their collectives)."""
    try:
        return [p.communicate(timeout=timeout)[0] for p in processes]
    finally:
        for process in processes:
            process.kill()


def _training_paths(build_dir, fold):
    """The face paths of a fold's training side, read from its shards."""
    paths = []
    for shard in build.Build.open(str(build_dir)).fold_files(fold, "train"):
        for record in tf.data.TFRecordDataset(shard):
            paths.append(tf.train.Example.FromString(record.numpy()).features.feature["path"].bytes_list.value[0]
                         .decode())
    return paths


def test_two_workers_see_each_face_once_per_epoch_and_resume_after_both_are_killed(tiny_build, tmp_path):
    """Two worker processes on loopback, each with its own run folder (no shared storage): killed
    together after an epoch, restarted; every epoch trains on the training side exactly once
    across the workers, the workers hold the same weights, and the run ends as one history."""
    configs = _worker_configs()
    run_dirs = [tmp_path / "worker0", tmp_path / "worker1"]
    epochs = 12
    commands = [_train_command(tiny_build, d, f"--epochs={epochs}", "--fold=fold0", "--strategy=multi_worker",
                               "--validate=false", "--audit_input", steps=None) for d in run_dirs]
    first = _start_workers(commands, configs)
    checkpoint = run_dirs[0] / "fold0" / "checkpoints" / "checkpoint"
    deadline = time.time() + 300
    while not checkpoint.exists():
        assert all(p.poll() is None for p in first), "".join(p.stdout.read() for p in first)[-4000:]
        assert time.time() < deadline, "training made no progress"
        time.sleep(0.05)
    for process in first:
        process.send_signal(signal.SIGKILL)
    for process in first:
        process.wait()
    assert not (run_dirs[0] / "fold0" / "model.keras").exists(), "the run ended before the kill"

    second = _start_workers(commands, configs)
    outputs = _finish_workers(second)
    for process, output in zip(second, outputs):
        assert process.returncode == 0, output[-4000:]
    resumed = [int(line.split()[-1]) for line in outputs[0].splitlines() if line.startswith("resuming after epoch")]
    assert len(resumed) == 1 and 1 <= resumed[0] < epochs, outputs[0][-3000:]
    assert "resuming after epoch" not in outputs[1]  # only the chief reports
    assert [h["epoch"] for h in _history(run_dirs[0])] == list(range(1, epochs + 1))
    assert not (run_dirs[1] / "fold0" / "checkpoints" / "worker-1-scratch").exists()

    expected = sorted(_training_paths(tiny_build, "fold0"))
    assert len(expected) == len(set(expected)) == 24
    for epoch in range(1, epochs + 1):
        audits = [json.loads((d / "fold0" / "input_audit" / f"worker-{i}" / f"epoch-{epoch:04d}.json").read_text())
                  for i, d in enumerate(run_dirs)]
        seen = [path for audit in audits for path in audit["paths"]]
        assert sorted(seen) == expected, f"epoch {epoch}: {len(seen)} faces, {len(set(seen))} distinct"
        assert min(len(a["paths"]) for a in audits) > 0
        assert audits[0]["weights_abs_sum"] == pytest.approx(audits[1]["weights_abs_sum"], rel=1e-6)
    assert (run_dirs[0] / "fold0" / "model.keras").exists() and (run_dirs[0] / "fold0" / "evaluation.json").exists()
    assert sorted(p.name for p in (run_dirs[0] / "fold0").iterdir()) == [
        "checkpoints", "evaluation.json", "history.jsonl", "input_audit", "logs", "model.keras", "run.json"]
    assert not (run_dirs[1] / "fold0" / "model.keras").exists()  # only the chief saves the model

def test_workers_reading_different_builds_both_stop_with_one_line(tiny_build, tmp_path):
    """A worker whose copy of the build differs (another manifest) would train on another epoch
    plan; both workers refuse before training instead of mixing data or hanging."""
    other = tmp_path / "other-build"
    shutil.copytree(tiny_build, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["created"] = "another build"
    (other / "manifest.json").write_text(json.dumps(manifest))
    configs = _worker_configs()
    commands = [_train_command(data, tmp_path / f"worker{i}", "--epochs=1", "--fold=fold0",
                               "--strategy=multi_worker", "--validate=false", steps=None)
                for i, data in enumerate([tiny_build, other])]
    processes = _start_workers(commands, configs)
    outputs = _finish_workers(processes)
    for process, output in zip(processes, outputs):
        assert process.returncode == 2, output[-3000:]
        assert "The workers do not agree on the training data" in output and "Traceback" not in output
    assert not (tmp_path / "worker0" / "fold0" / "history.jsonl").exists()


def test_a_fixed_box_outside_the_map_is_one_line(tiny_build, tmp_path):
    result = subprocess.run(
        _train_command(tiny_build, tmp_path / "run", "--stage=local_head", "--fixed_box=0.9,0.1,0.3,0.3",
                       "--input_size=64"),  # a 2x2 map, whose sampled region is 0.25-0.75 of the input
        cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--fixed_box: Box 0.9,0.1,0.3,0.3 reaches outside the feature map: on a 2x2 map" in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_second_training_on_a_held_run_folder_stops_at_once_and_the_first_goes_on(tiny_build, tmp_path):
    run_dir = tmp_path / "run"
    command = _train_command(tiny_build, run_dir, "--epochs=500", "--fold=fold0")  # far longer than the test
    first = subprocess.Popen(command, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while len(_history(run_dir)) < 1:  # the first is training
            assert first.poll() is None and time.time() < deadline, first.stdout.read().decode()[-3000:]
            time.sleep(0.2)
        second = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
        assert first.poll() is None, "the first run ended before the second was tried"
        assert second.returncode == 2, second.stderr[-2000:]
        ours = [line for line in second.stderr.splitlines() if line.startswith("train.py:")]
        assert len(ours) == 1 and f"process {first.pid} on" in ours[0] and "Traceback" not in second.stderr
        trained = len(_history(run_dir))
        while len(_history(run_dir)) <= trained:  # and it goes on training, unharmed
            assert first.poll() is None and time.time() < deadline, first.stdout.read().decode()[-3000:]
            time.sleep(0.2)
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=300)
    assert first.returncode == 130
    epochs = [h["epoch"] for h in _history(run_dir)]
    assert epochs == list(range(1, len(epochs) + 1))


def test_an_unsafe_start_or_a_damaged_build_is_one_line_before_anything_is_recorded(tiny_build, tmp_path):
    import keras

    unsafe = tmp_path / "lambda.keras"  # a Python lambda runs code when loaded: Keras' safe mode refuses it
    keras.Sequential([keras.Input((2,)), keras.layers.Lambda(lambda x: x * 2)]).save(unsafe)
    result = subprocess.run(_train_command(tiny_build, tmp_path / "run", "--epochs=1", "--fold=fold0",
                                           f"--init_checkpoint={unsafe}"),
                            cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    ours = [line for line in result.stderr.splitlines() if line.startswith("train.py:")]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(ours) == 1 and f"--init_checkpoint={unsafe}" in ours[0] and "safely" in ours[0]
    copy = tmp_path / "copied_build"  # a build damaged in a copy: one shard's bytes changed
    shutil.copytree(tiny_build, copy)
    shard = sorted(copy.glob("*.tfrecord"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = subprocess.run(_train_command(copy, tmp_path / "run2", "--epochs=1", "--fold=fold0"),
                            cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    ours = [line for line in result.stderr.splitlines() if line.startswith("train.py:")]
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(ours) == 1 and shard.name in ours[0] and "checksum" in ours[0]
    assert not (tmp_path / "run2" / "fold0" / "run.json").exists()  # nothing recorded
