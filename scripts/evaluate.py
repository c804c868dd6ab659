"""Evaluates trained models with the paper's protocol: each fold's test side, ten-crop.

The command's flags and usage are `keras_alage.cli.evaluate_flags` (`--help` lists them), its work
`keras_alage.cli.evaluate`; an installed package also has it as `alage evaluate`.
"""

from keras_alage import cli

if __name__ == "__main__":
    cli.run_command("evaluate")
