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


def run_script(script: str, *args: str, cwd=None, folder: str = "scripts") -> subprocess.CompletedProcess:
    """`python <folder>/<script> args...` as a subprocess would answer it: returncode, stdout and
    stderr (an uncaught exception is exit status 1 with its traceback, as Python's own). The script
    file itself runs, as `__main__`."""
    defined, modules = set(flags.FLAGS), set(sys.modules)
    saved = sys.argv, os.getcwd(), signal.getsignal(signal.SIGTERM)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        sys.argv = [str(REPO / folder / script), *args]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
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
        flags.FLAGS.unparse_flags()
        for flag in set(flags.FLAGS) - defined:
            delattr(flags.FLAGS, flag)
        for module in set(sys.modules) - modules:  # a command's flags module defines its flags on import
            if module.startswith("keras_alage.cli."):
                del sys.modules[module]
    return subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())
