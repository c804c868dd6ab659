"""`alage COMMAND [flags]`: the user's day as one installed command (`pip install keras-alage`).

Each command is two modules of this package (`running.run_command`): its flags, and its work,
imported only once the flags are parsed. Only the command asked for is loaded, so its flags are
the only ones defined; `alage --help` lists the commands without loading any of them. `predict`
and `train` are also the entry points `alage-predict` and `alage-train`.
"""

import ast
import os
import sys

from keras_alage import cli

# command -> its name in this package (`<name>_flags`, `<name>`), in the order of a user's day
COMMANDS = {
    "build-tfrecords": "build_tfrecords",
    "train": "train",
    "evaluate": "evaluate",
    "export": "export",
    "serve": "serve",
    "predict": "predict",
    "measure-crop-margin": "measure_crop_margin",
    "measure-faceapi-cut": "measure_faceapi_cut",
}


def usage() -> str:
    return "usage: alage {" + ",".join(COMMANDS) + "} [flags]   (alage COMMAND --help for its flags)"


def summary(command: str) -> str:
    """The first line of the command's usage (its flags module's docstring), read from the source:
    importing the module would define its flags, which other commands share names with."""
    path = os.path.join(os.path.dirname(__file__), f"{COMMANDS[command]}_flags.py")
    try:
        with open(path, encoding="utf-8") as source:
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
    sys.argv = [f"alage {argv[1]}", *argv[2:]]
    cli.run_command(COMMANDS[argv[1]])


def predict() -> None:
    """The entry point `alage-predict`."""
    cli.run_command("predict")


def train() -> None:
    """The entry point `alage-train`."""
    cli.run_command("train")


if __name__ == "__main__":
    main()
