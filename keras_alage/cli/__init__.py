"""The command-line layer: quiet TensorFlow start-up, flagfiles by short name, each command's own
`--help`, one way to run a main.

Importing this package first (every command does) silences TensorFlow's native start-up messages
(CUDA probing, oneDNN notices: `alage_pipelines.quiet`) at its first import, whoever makes it;
`ALAGE_VERBOSE=1` brings them back. The package does not import TensorFlow itself: `alage --help`,
and a command's `--help` where its flags need no TensorFlow, answer without loading it.
"""

import errno
import glob
import importlib.abc
import importlib.machinery
import os
import signal
import sys
from typing import List, Optional, Sequence

from absl import app, flags

from keras_alage import locations
from alage_pipelines import files, inputs, quiet


class QuietTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """TensorFlow's first import, by a command or any library it calls, made through
    `quiet.import_tensorflow_quietly` (the module is TensorFlow's own, spec included); later
    imports find it loaded."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)  # where it is, for anyone who asks
        if spec is not None:
            spec.loader = self
        return spec

    def create_module(self, spec):
        if self in sys.meta_path:
            sys.meta_path.remove(self)  # the import below finds TensorFlow as usual
        quiet.import_tensorflow_quietly()
        module = sys.modules[spec.name]
        self.loaded_spec = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self.loaded_spec  # the import system set this finder's spec on it


if not quiet.VERBOSE and "tensorflow" not in sys.modules:
    sys.meta_path.insert(0, QuietTensorFlow())


def find_flagfile(path: str, search_dir: Optional[str] = None) -> Optional[str]:
    """`path` itself where it exists, else the file of that name under configs/ (in any of its
    sub-folders: paper/, cpu/, releases/, evidence/, quickstart/), else None."""
    if os.path.exists(path):
        return path
    search_dir = search_dir or locations.configs_dir()
    direct = os.path.join(search_dir, path)
    if os.path.exists(direct):
        return direct
    for folder, _, names in sorted(os.walk(search_dir)):
        if os.path.basename(path) in names:
            return os.path.join(folder, os.path.basename(path))
    return None


def resolve_flagfiles(argv: Sequence[str], search_dir: Optional[str] = None) -> List[str]:
    """Lets `--flagfile=morph.flags` name a file of configs/ (or of one of its sub-folders) when
    no such file is in the working directory, so the short form works from anywhere."""
    resolved = []
    for arg in argv:
        if arg.startswith("--flagfile="):
            path = arg.split("=", 1)[1]
            found = find_flagfile(path, search_dir)
            if found:
                try:  # absl would open a pipe and wait on it
                    inputs.check_regular(found, f"--flagfile={path}")
                except inputs.NotRegularFile as error:
                    print(f"{os.path.basename(sys.argv[0])}: {error}", file=sys.stderr)
                    sys.exit(2)
                arg = f"--flagfile={found}"
            else:
                places = ", ".join([os.getcwd(), search_dir or locations.configs_dir()])
                print(f"{os.path.basename(sys.argv[0])}: --flagfile: {path} not found (looked in {places}).",
                      file=sys.stderr)
                sys.exit(2)
        resolved.append(arg)
    return resolved


def no_arguments(argv: Sequence[str]) -> None:
    """Refuses words left over after the flags (a flag without its dashes, a stray path)."""
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])} (every setting is a --flag)")


def matching_files(pattern: str, flag: str, limit: Optional[int] = None) -> List[str]:
    """The files a glob flag names, sorted, the first `limit` of them; refuses a glob that matches none."""
    paths = sorted(glob.glob(pattern))[:limit]
    if not paths:
        raise app.UsageError(f"--{flag}={pattern} matches no file.")
    return paths


def require_positive(*names: str, flag_values=flags.FLAGS) -> None:
    """Checks, when flags are parsed, that these integer flags are at least 1 where given: a size
    of 0 is refused before anything is opened or recorded."""
    for name in names:
        flags.register_validator(name, lambda value: value is None or value >= 1,
                                 message=f"--{name} must be at least 1", flag_values=flag_values)


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


def damaged_build(data_dir: str, error: Exception) -> str:
    """One line for a record found damaged while a command read it ("corrupted record at 247285"
    names no file): the shard that differs from the build's manifest, every shard hashed again (and
    the verification record dropped, so the next command says so before it starts), else the
    reader's own first line."""
    from alage_pipelines import build

    try:
        build.verify_shards(data_dir)
    except ValueError as found:
        try:
            os.remove(os.path.join(data_dir, build.VERIFIED))
        except OSError:
            pass
        return str(found)
    first = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
    return f"--data_dir={data_dir}: a record could not be read ({first.strip()[:200]})"


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


def run(main, argv=None) -> None:
    """`absl.app.run` for our scripts: a usage or input error prints one line naming the flag
    or file (no flag help, no traceback) and exits 2; SIGTERM ends a run like Ctrl-C, so its
    cleanup (staging folders, temporary files) runs; an interrupted run exits 130. `--help` or
    `-h` prints the command's own flags (those of `main`'s module) and exits 0."""
    program = os.path.basename(sys.argv[0])
    if asks_for_help(sys.argv if argv is None else argv):
        print_help(command_help(main.__module__))
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
    app.run(guarded, argv=resolve_flagfiles(sys.argv if argv is None else argv), flags_parser=parse)
