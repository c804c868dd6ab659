"""Exports a trained age model as a SavedModel for TF Serving.

The command lives in `keras_alage.cli.export` (flags, usage: `--help`); an installed package also
has it as `alage export`.
"""

from keras_alage.cli import export

if __name__ == "__main__":
    export.run()
