"""`--help` and `-h` on every command list that command's own flags with their help texts and exit 0,
without loading TensorFlow (its flags are defined from light option lists, its work imported after
they parse); `alage --help` lists the commands."""

import ast
import os
import pathlib
import re
import subprocess
import sys

import pytest

from keras_alage import cli
from keras_alage.cli import main as alage
from keras_alage.cli import train_flags

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
        cli.run_command("train", argv=["train.py", "--help"])
    shown = capsys.readouterr()
    assert done.value.code == 0 and shown.err == ""
    assert shown.out.startswith(train_flags.__doc__.strip().splitlines()[0])
    for name in ("--data_dir", "--stage", "--init_dlib_age", "--[no]audit_input"):
        assert f"\n  {name}:" in shown.out, name
    assert "Start from dlib's CC0 age network" in shown.out  # the help text, not only the names
    assert not any(flag in shown.out for flag in ABSL_ONLY), shown.out


def test_help_comes_before_a_missing_flagfile_or_a_bad_flag(capsys):
    with pytest.raises(SystemExit) as done:
        cli.run_command("train", argv=["train.py", "--flagfile=no_such_experiment.flags", "--epochs=many", "-h"])
    assert done.value.code == 0 and "--epochs" in capsys.readouterr().out


def test_alage_help_lists_every_command_with_what_it_does(capsys):
    for words in (["alage", "--help"], ["alage", "-h"], ["alage", "help"]):
        with pytest.raises(SystemExit) as done:
            alage.main(words)
        shown = capsys.readouterr().out
        assert done.value.code == 0
        assert [line.split()[0] for line in shown.splitlines() if line.startswith("  ")] == list(alage.COMMANDS)
        assert f"  train{' ' * (len('measure-faceapi-cut') - len('train'))}  {train_flags.__doc__.splitlines()[0]}\n" in shown


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



@pytest.mark.slow
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
    ["-c", "import sys; sys.argv = ['alage-predict', '--help']; from keras_alage.cli import main; main.predict()"],
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


def defined_flags(tree, helpers=None):
    """The names of the flags a parsed module (or function) defines, read from its source:
    `flags.DEFINE_*("name", ...)`, and those of the shared flag functions of `cli.arguments` it calls
    (`cli.define_compute_flags(__name__)`)."""
    helpers = HELPERS if helpers is None else helpers
    names = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if called.startswith("DEFINE"):
            names.append(node.args[0].value)
        elif called in helpers:
            names += defined_flags(helpers[called], helpers)
    return names


CLI = REPO / "keras_alage" / "cli"
# The flag-defining functions of cli.arguments, by name.
HELPERS = {node.name: node for node in ast.parse((CLI / "arguments.py").read_text()).body
           if isinstance(node, ast.FunctionDef) and node.name.startswith("define_")}
# What a subprocess reports after a command has answered: its exit status and whether it loaded TensorFlow.
PROBE = ("import runpy, sys\n"
         "sys.argv = sys.argv[1:]\n"
         "try:\n"
         "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
         "finally:\n"
         "    print('tensorflow loaded:', 'tensorflow' in sys.modules, 'keras' in sys.modules, file=sys.stderr)\n")


@pytest.mark.parametrize("name", sorted(alage.COMMANDS.values()))
def test_every_scripts_help_lists_exactly_its_own_flags_without_loading_tensorflow(name):
    own = defined_flags(ast.parse((CLI / f"{name}_flags.py").read_text()))
    assert own, f"{name}_flags.py defines no flag"
    result = subprocess.run([sys.executable, "-c", PROBE, str(REPO / "scripts" / f"{name}.py"), "--help"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.splitlines()[-1] == "tensorflow loaded: False False", result.stderr[-2000:]
    shown = re.findall(r"^  --(?:\[no\])?(\w+):", result.stdout, re.M)
    assert sorted(shown) == sorted(own), result.stdout


@pytest.mark.parametrize("command", ["train", "evaluate", "export"])
def test_a_wrong_flag_is_one_line_before_tensorflow_loads(command):
    result = subprocess.run([sys.executable, "-c", PROBE, str(alage.__file__), command, "--no_such_flag=1"],
                            capture_output=True, text=True, timeout=300)
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and lines[-1] == "tensorflow loaded: False False", result.stderr[-2000:]
    assert len(lines) == 2 and lines[0].startswith(f"alage {command}: ") and "no_such_flag" in lines[0], lines


@pytest.mark.parametrize("program, flag", [("alage-predict", "--draw"), ("alage-train", "--init_dlib_age")])
def test_the_entry_points_answer_help_without_tensorflow(program, flag):
    entry = re.search(rf'"{program}=([\w.]+):(\w+)"', (REPO / "setup.py").read_text())
    assert entry, f"setup.py declares no {program} entry point"
    code = (f"import sys; sys.argv = ['{program}', '--help']\n"
            f"from {entry.group(1)} import {entry.group(2)}\n"
            f"try:\n    {entry.group(2)}()\n"
            f"except SystemExit as done:\n    print('exit', done.code, 'tensorflow' in sys.modules, file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stderr.splitlines()[-1] == "exit 0 False", result.stderr[-2000:]
    assert f"\n  {flag}:" in result.stdout


def test_a_commands_flags_are_defined_only_in_its_flags_module():
    """The flags are parsed before a command's work is imported: a flag defined beside `main` would
    be unknown to the parser and missing from --help."""
    for name in alage.COMMANDS.values():
        assert (CLI / f"{name}_flags.py").is_file() and (CLI / f"{name}.py").is_file(), name
        work = ast.parse((CLI / f"{name}.py").read_text())
        assert defined_flags(work) == [], f"keras_alage/cli/{name}.py defines flags: move them to {name}_flags.py"
