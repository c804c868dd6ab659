"""`alage COMMAND [flags]`: the user's day as one installed command (`pip install keras-alage`).

Each command is a module of this package with its own flags; only the one asked for is imported,
so its flags are the only ones defined.
"""

import importlib
import sys

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


def main(argv=None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(usage())
        sys.exit(0 if len(argv) >= 2 else 2)
    if argv[1] not in COMMANDS:
        print(f"alage: unknown command {argv[1]!r}; {usage()}", file=sys.stderr)
        sys.exit(2)
    command = importlib.import_module(f"keras_alage.cli.{COMMANDS[argv[1]]}")
    sys.argv = [f"alage {argv[1]}", *argv[2:]]
    command.run()


if __name__ == "__main__":
    main()
