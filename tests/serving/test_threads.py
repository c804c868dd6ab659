"""The networks' threads (`serving.threads`): set for the process before TensorFlow's first op, refused
in one line after it, and set by the commands that answer faces before they load a model."""

import subprocess
import sys

import pytest

from keras_alage.cli import compute
from keras_alage.serving import options, threads
from tests.cli import in_process

PROBE = """
import tensorflow as tf
from keras_alage.serving import threads
threads.set_threads()
print(threads.current())
tf.constant(1.0) + 1.0  # TensorFlow's runtime starts
threads.set_threads()  # what is already set is no error
try:
    threads.set_threads(2, 3)
except threads.TooLate as error:
    print("late:", error)
print(threads.current())
"""


def test_threads_are_set_before_the_first_op_and_refused_after_it():
    run = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    default = (options.INTRA_OP_THREADS, options.INTER_OP_THREADS)
    assert lines[0] == str(default) and lines[-1] == str(default), lines
    assert lines[1].startswith("late: TensorFlow has started already") and "before its first op" in lines[1], lines


def test_negative_thread_counts_are_refused():
    with pytest.raises(ValueError, match="0 .TensorFlow's choice. or more"):
        threads.set_threads(-1, 0)


@pytest.mark.parametrize("script, args", [("predict.py", ["photo.jpg"]), ("serve.py", ["--model_base_path=nowhere"])])
def test_the_commands_set_their_threads_before_anything_else(script, args, monkeypatch):
    calls = []
    monkeypatch.setattr(threads, "set_threads", lambda intra, inter: calls.append((intra, inter)))
    monkeypatch.setattr(compute.precision, "set_precision", lambda name: calls.append(name))
    in_process.run_script(script, "--intra_op_threads=3", "--inter_op_threads=4", *args)
    assert calls[:2] == [(3, 4), "float32"], calls


@pytest.mark.parametrize("script, args", [("predict.py", ["photo.jpg"]), ("serve.py", ["--model_base_path=nowhere"])])
def test_threads_asked_for_too_late_end_in_one_line(script, args, monkeypatch):
    def late(intra, inter):
        raise threads.TooLate("TensorFlow has started already")

    monkeypatch.setattr(threads, "set_threads", late)
    result = in_process.run_script(script, "--intra_op_threads=3", *args)
    ours = [line for line in result.stderr.splitlines() if line.startswith(f"{script}:")]
    assert result.returncode == 2 and "Traceback" not in result.stderr and len(ours) == 1, result.stderr[-2000:]
    assert "--intra_op_threads / --inter_op_threads: TensorFlow has started already" in ours[0]
