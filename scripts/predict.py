"""Predicts the age of every face in photos and videos: detect, crop as in training, answer, report.

The command's flags and usage are `keras_alage.cli.predict_flags` (`--help` lists them), its work
`keras_alage.cli.predict`; an installed package also has it as `alage predict`.
"""

from keras_alage import cli

if __name__ == "__main__":
    cli.run_command("predict")
