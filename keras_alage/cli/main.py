"""`alage COMMAND [flags]`: the user's day as one installed command (`pip install keras-alage`).

Each command is a module of this package with its own flags; only the one asked for is imported,
so its flags are the only ones defined. `alage --help` lists the commands without importing any
of them (each loads TensorFlow).
"""

import ast
import importlib
import os
import sys

from keras_alage import cli

# command -> module of keras_alage.cli, in the order of a user's day
COMMANDS = {
    "build-tfrecords": "build_tfrecords",
    "train": "train",
    "evaluate": "evaluate",
    "export": "export",
    "predict": "predict",
    "measure-crop-margin": "measure_crop_margin",
    "measure-faceapi-cut": "measure_faceapi_cut",
}


def usage() -> str:
    return "usage: alage {" + ",".join(COMMANDS) + "} [flags]   (alage COMMAND --help for its flags)"


def summary(command: str) -> str:
    """The first line of the command's docstring, read from its module's source: importing the
    module would load TensorFlow to print one line."""
    try:
        with open(os.path.join(os.path.dirname(__file__), f"{COMMANDS[command]}.py"), encoding="utf-8") as source:
            doc = ast.get_docstring(ast.parse(source.read())) or ""
    except (OSError, SyntaxError, ValueError):  # installed without its sources
        return ""
    return doc.splitlines()[0] if doc else ""


def listing() -> str:
    """`alage --help`: the usage line, then each command with what it does."""
    width = max(map(len, COMMANDS))
    lines = [f"  {command:<{width}}  {summary(command)}".rstrip() for command in COMMANDS]
    return "\n".join(["usage: alage COMMAND [flags]   (alage COMMAND --help for its flags)", "",
                      "commands, in the order of a user's day:", *lines]) + "\n"


def main(argv=None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2:
        print(listing(), file=sys.stderr, end="")
        sys.exit(2)
    if argv[1] in cli.HELP_WORDS or argv[1] == "help":
        if len(argv) > 2 and argv[1] == "help" and argv[2] in COMMANDS:  # `alage help predict`
            main([argv[0], argv[2], "--help"])
        cli.print_help(listing())
        sys.exit(0)
    if argv[1] not in COMMANDS:
        print(f"alage: unknown command {argv[1]!r}; {usage()}", file=sys.stderr)
        sys.exit(2)
    # The dispatch itself: only the command asked for is imported (its flags, TensorFlow with them).
    command = importlib.import_module(f"keras_alage.cli.{COMMANDS[argv[1]]}")
    sys.argv = [f"alage {argv[1]}", *argv[2:]]
    command.run()


if __name__ == "__main__":
    main()
