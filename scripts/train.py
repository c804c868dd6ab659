"""Trains an AL-ResNet / AL-RoR age estimator on a TFRecord build, one stage at a time.

The command lives in `keras_alage.cli.train` (flags, usage: `--help`); an installed package also
has it as `alage train`.
"""

from keras_alage.cli import train

if __name__ == "__main__":
    train.run()
