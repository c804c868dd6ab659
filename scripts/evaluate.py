"""Evaluates trained models with the paper's protocol: each fold's test side, ten-crop.

The command lives in `keras_alage.cli.evaluate` (flags, usage: `--help`); an installed package also
has it as `alage evaluate`.
"""

from keras_alage.cli import evaluate

if __name__ == "__main__":
    evaluate.run()
