"""Trains an AL-ResNet / AL-RoR age estimator on a TFRecord build, one stage at a time.

The command's flags and usage are `keras_alage.cli.train_flags` (`--help` lists them), its work
`keras_alage.cli.train`; an installed package also has it as `alage train`.
"""

from keras_alage import cli

if __name__ == "__main__":
    cli.run_command("train")
