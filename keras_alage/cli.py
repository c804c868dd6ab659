"""Helpers for the command-line scripts: flagfiles by short name, and one way to run a main."""

import os
import sys
from typing import List, Sequence


REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO_ROOT, "configs")


def resolve_flagfiles(argv: Sequence[str], search_dirs: Sequence[str] = (CONFIG_DIR,)) -> List[str]:
    """Lets `--flagfile=morph.flags` name a file of configs/ when no such file is in the
    working directory, so the short form works from the repository root."""
    resolved = []
    for arg in argv:
        if arg.startswith("--flagfile="):
            path = arg.split("=", 1)[1]
            if not os.path.exists(path):
                for folder in search_dirs:
                    candidate = os.path.join(folder, path)
                    if os.path.exists(candidate):
                        arg = f"--flagfile={candidate}"
                        break
                else:
                    places = ", ".join([os.getcwd(), *search_dirs])
                    print(f"{os.path.basename(sys.argv[0])}: --flagfile: {path} not found (looked in {places}).",
                          file=sys.stderr)
                    sys.exit(2)
        resolved.append(arg)
    return resolved


# What a user's input can get wrong: said in one line, exit status 2, no traceback.
INPUT_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run(main, argv=None) -> None:
    """`absl.app.run` for our scripts: a usage or input error prints one line naming the flag
    or file (no flag help, no traceback) and exits 2; SIGTERM ends a run like Ctrl-C, so its
    cleanup (staging folders, temporary files) runs; an interrupted run exits 130."""
    import signal

    from absl import app

    program = os.path.basename(sys.argv[0])

    def guarded(args):
        try:
            return main(args)
        except (app.UsageError, *INPUT_ERRORS) as error:
            message = error.args[0] if isinstance(error, app.UsageError) and error.args else str(error)
            print(f"{program}: {message}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{program}: interrupted", file=sys.stderr)
            return 130

    def parse(args):
        from absl import flags

        try:
            return flags.FLAGS(args)
        except flags.Error as error:  # an unknown flag or a bad value: one line too, not absl's two
            print(f"{program}: {error}", file=sys.stderr)
            sys.exit(2)

    signal.signal(signal.SIGTERM, raise_interrupt)
    app.run(guarded, argv=argv, flags_parser=parse)
