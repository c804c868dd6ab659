"""One way to run a command: its own `--help`, its flags parsed before its work is imported, and
what goes wrong told in one line with exit status 2."""

import errno
import importlib
import os
import signal
import sys
from typing import Optional, Sequence

from absl import app, flags

from keras_alage.cli import arguments
from alage_pipelines import files

# What a user's input can get wrong: said in one line, exit status 2, no traceback.
INPUT_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError,
                files.FolderBusy)


# Where a user's files are can fail too: a read-only or full disk, no permission, a quota.
PLACE_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.ENAMETOOLONG,
                errno.ENOTDIR, errno.EISDIR}


def full_disk_line(message: str) -> Optional[str]:
    """The line of an error's message that says the disk or quota is full, or None."""
    for reason in (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT)):
        for line in message.splitlines():
            if reason in line:
                return line.strip()[:400]
    return None


# The words that ask a command for its help (absl's own --help lists only the flags __main__
# defines, none for a script over this package, and exits 1; it has no -h).
HELP_WORDS = ("-h", "-?", "--help", "-help", "--helpshort", "-helpshort")


def asks_for_help(argv: Sequence[str]) -> bool:
    """Whether the words after the program's name ask for help (up to a `--` that ends the flags)."""
    words = list(argv[1:])
    if "--" in words:
        words = words[:words.index("--")]
    return any(word in HELP_WORDS for word in words)


def command_help(module_name: str) -> str:
    """A command's help: its module's docstring, then every flag that module defines with its help
    text, default and type."""
    program = os.path.basename(sys.argv[0])
    doc = (sys.modules[module_name].__doc__ or f"usage: {program} [flags]").strip()
    # absl files the flags of __main__ under the program's path
    listing = flags.FLAGS.module_help(sys.argv[0] if module_name == "__main__" else module_name)
    return f"{doc}\n\nflags:\n{listing}\n" if listing else f"{doc}\n"


def print_help(text: str) -> None:
    """Writes help to stdout; a reader that stops early (`--help | head`) is no error."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run(main, argv=None, usage: Optional[str] = None) -> None:
    """`absl.app.run` for our scripts: a usage or input error prints one line naming the flag
    or file (no flag help, no traceback) and exits 2; SIGTERM ends a run like Ctrl-C, so its
    cleanup (staging folders, temporary files) runs; an interrupted run exits 130. `--help` or
    `-h` prints the command's own flags and exits 0: those of the module named `usage` (default:
    `main`'s module), under its docstring."""
    program = os.path.basename(sys.argv[0])
    if asks_for_help(sys.argv if argv is None else argv):
        print_help(command_help(usage or main.__module__))
        sys.exit(0)

    def guarded(args):
        try:
            return main(args)
        except (app.UsageError, *INPUT_ERRORS) as error:
            message = error.args[0] if isinstance(error, app.UsageError) and error.args else str(error)
            print(f"{program}: {message}", file=sys.stderr)
            return 2
        except OSError as error:
            if error.errno not in PLACE_ERRNOS:
                raise  # not the user's doing: a bug shows its traceback
            print(f"{program}: {error.filename or 'a file'}: {error.strerror}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{program}: interrupted", file=sys.stderr)
            return 130
        except Exception as error:  # a full disk under TensorFlow's or Beam's writers: their own error types
            line = full_disk_line(str(error))
            if line is None:
                raise
            print(f"{program}: {line}", file=sys.stderr)
            return 2

    def parse(args):
        try:
            return flags.FLAGS(args)
        except flags.Error as error:  # an unknown flag or a bad value: one line too, not absl's two
            print(f"{program}: {error}", file=sys.stderr)
            sys.exit(2)

    signal.signal(signal.SIGTERM, raise_interrupt)
    app.run(guarded, argv=arguments.resolve_flagfiles(sys.argv if argv is None else argv), flags_parser=parse)


# A command of this package is two modules: `keras_alage.cli.<name>_flags` (its usage as docstring
# and its flags, built from the library's light option lists: no TensorFlow) and
# `keras_alage.cli.<name>` (its `main`, with the library it calls).
FLAGS_MODULE = "keras_alage.cli.{}_flags"
MAIN_MODULE = "keras_alage.cli.{}"


def run_command(name: str, argv=None) -> None:
    """Runs the command `name` (`predict`, `train`, ...): its flags are defined, `--help` is
    answered from them, they are parsed, and only then is the module doing the work imported, so
    help and a wrong flag answer without loading TensorFlow."""
    usage = importlib.import_module(FLAGS_MODULE.format(name))

    def main(args):
        return importlib.import_module(MAIN_MODULE.format(name)).main(args)

    run(main, argv, usage=usage.__name__)
