"""`--help` and `-h` on every command list that command's own flags with their help texts and exit 0,
and `alage --help` lists the commands without loading TensorFlow."""

import os
import pathlib
import subprocess
import sys

import pytest

from keras_alage import cli
from keras_alage.cli import main as alage
from keras_alage.cli import train

REPO = pathlib.Path(__file__).resolve().parents[2]
ABSL_ONLY = ("--helpfull", "--logtostderr", "--only_check_args", "--verbosity", "--pdb_post_mortem")


@pytest.mark.parametrize("argv, asks", [
    (["train.py", "--help"], True),
    (["train.py", "--data_dir=x", "-h"], True),
    (["train.py", "-?"], True),
    (["train.py", "--helpshort"], True),
    (["train.py", "--output=--help", "helpful", "-hh"], False),  # a value, a word, another flag
    (["predict.py", "--", "-h"], False),  # after `--`: a photo's name
    (["train.py"], False),
])
def test_the_words_that_ask_for_help(argv, asks):
    assert cli.asks_for_help(argv) is asks


def test_a_commands_help_lists_its_own_flags_with_their_help_texts(capsys):
    with pytest.raises(SystemExit) as done:
        cli.run(train.main, argv=["train.py", "--help"])
    shown = capsys.readouterr()
    assert done.value.code == 0 and shown.err == ""
    assert shown.out.startswith(train.__doc__.strip().splitlines()[0])
    for name in ("--data_dir", "--stage", "--init_dlib_age", "--[no]audit_input"):
        assert f"\n  {name}:" in shown.out, name
    assert "Start from dlib's CC0 age network" in shown.out  # the help text, not only the names
    assert not any(flag in shown.out for flag in ABSL_ONLY), shown.out


def test_help_comes_before_a_missing_flagfile_or_a_bad_flag(capsys):
    with pytest.raises(SystemExit) as done:
        cli.run(train.main, argv=["train.py", "--flagfile=no_such_experiment.flags", "--epochs=many", "-h"])
    assert done.value.code == 0 and "--epochs" in capsys.readouterr().out


def test_alage_help_lists_every_command_with_what_it_does(capsys):
    for words in (["alage", "--help"], ["alage", "-h"], ["alage", "help"]):
        with pytest.raises(SystemExit) as done:
            alage.main(words)
        shown = capsys.readouterr().out
        assert done.value.code == 0
        assert [line.split()[0] for line in shown.splitlines() if line.startswith("  ")] == list(alage.COMMANDS)
        assert f"  train{' ' * (len('measure-faceapi-cut') - len('train'))}  {train.__doc__.splitlines()[0]}\n" in shown


def test_alage_alone_lists_the_commands_and_exits_2(capsys):
    with pytest.raises(SystemExit) as done:
        alage.main(["alage"])
    assert done.value.code == 2 and "measure-crop-margin" in capsys.readouterr().err


def test_alage_help_does_not_load_tensorflow():
    code = ("import sys\n"
            "from keras_alage.cli import main\n"
            "try:\n"
            "    main.main(['alage', '--help'])\n"
            "except SystemExit as done:\n"
            "    print('exit', done.code, 'tensorflow' in sys.modules, 'keras' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.splitlines()[-1] == "exit 0 False False", result.stdout[-2000:] + result.stderr[-2000:]



def test_tensorflow_loads_only_when_imported_and_then_silently_as_itself():
    """Importing the command layer loads no TensorFlow; its first import (here through Keras) is
    silenced and gives TensorFlow's own module, its spec included."""
    code = ("import sys\n"
            "import keras_alage.cli\n"
            "print('tensorflow' in sys.modules)\n"
            "import keras\n"
            "print('tensorflow' in sys.modules)\n"
            "import tensorflow as tf\n"
            "tf.constant(1)\n"
            "print(type(tf.__spec__.loader).__name__, tf.__spec__.origin == tf.__file__)\n")
    user = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "ALAGE_VERBOSE")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=user)
    assert result.stdout.splitlines() == ["False", "True", "SourceFileLoader True"], result.stdout + result.stderr[-2000:]
    assert "I0000" not in result.stderr and "cuInit" not in result.stderr, result.stderr

@pytest.mark.parametrize("command", [
    [str(REPO / "scripts" / "predict.py"), "--help"],
    ["-m", "keras_alage.cli.main", "predict", "-h"],  # alage predict -h
    ["-c", "import sys; sys.argv = ['alage-predict', '--help']; from keras_alage.cli import predict; predict.run()"],
], ids=["scripts/predict.py", "alage predict", "alage-predict"])
def test_predict_help_lists_predicts_flags_and_nothing_of_absls(command):
    result = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""  # nor TensorFlow's start-up messages
    for name in ("--output", "--draw", "--[no]overwrite", "--no_face", "--model"):
        assert f"\n  {name}:" in result.stdout, name
    assert "Write drawn photos into this folder" in result.stdout
    assert not any(flag in result.stdout for flag in ABSL_ONLY), result.stdout
    assert "--data_dir" not in result.stdout  # no other command's flags
