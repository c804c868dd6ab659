"""A command run in the test's own process as `scripts/<name>.py` runs it:
its flags defined and parsed, its exit status and what it printed, then its flags and modules
dropped so that the next command (which may define flags of the same names) starts afresh.

A subprocess pays an interpreter and TensorFlow's start-up for each case (about 5 s of CPU on
these machines); this pays the command's own work only. Keep subprocesses where the process is
the point: the exit status a shell sees, signals, start-up noise."""

import contextlib
import io
import os
import pathlib
import runpy
import signal
import subprocess
import sys
import traceback

from absl import app, flags, logging  # noqa: F401  (absl's own flags, defined once, before any command's)

from keras_alage import cli  # noqa: F401


REPO = pathlib.Path(__file__).resolve().parents[2]


def _copied(state: dict) -> dict:
    """FlagValues' own state, its dicts and lists copied (the lists inside its dicts too)."""
    def copy(value):
        if isinstance(value, dict):
            return {k: list(v) if isinstance(v, list) else v for k, v in value.items()}
        return list(value) if isinstance(value, list) else value

    return {key: copy(value) for key, value in state.items()}


@contextlib.contextmanager
def _flags_of_its_own():
    """Only absl's own flags defined while the block runs, as in a fresh process: the flags other
    modules of the test session defined (a command's flags module imported by another test) are
    set aside with their modules, and put back after, as they were."""
    values = flags.FLAGS
    saved_state = _copied(vars(values))
    theirs = {id(flag) for module, defined in values.flags_by_module_dict().items() if not module.startswith("absl")
              for flag in defined}
    for name in [name for name in values if id(values[name]) in theirs]:
        delattr(values, name)
    values.unparse_flags()
    modules = {name: sys.modules.pop(name) for name in list(sys.modules) if name.startswith("keras_alage.cli.")}
    try:
        yield
    finally:
        for name in [name for name in sys.modules if name.startswith("keras_alage.cli.")]:
            del sys.modules[name]
        sys.modules.update(modules)
        vars(values).clear()
        vars(values).update(saved_state)


def run_script(script: str, *args: str, cwd=None, folder: str = "scripts") -> subprocess.CompletedProcess:
    """`python <folder>/<script> args...` as a subprocess would answer it: returncode, stdout and
    stderr (an uncaught exception is exit status 1 with its traceback, as Python's own). The script
    file itself runs, as `__main__`, with only the flags it defines."""
    saved = sys.argv, os.getcwd(), signal.getsignal(signal.SIGTERM)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        sys.argv = [str(REPO / folder / script), *args]
        with _flags_of_its_own(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                runpy.run_path(sys.argv[0], run_name="__main__")
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
            except BaseException:  # what a subprocess would end on: its traceback, status 1
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = saved[0]
        os.chdir(saved[1])
        signal.signal(signal.SIGTERM, saved[2])
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())
