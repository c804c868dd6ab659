"""Predicts the age of every face in photos and videos: detect, crop as in training, answer, report.

The command lives in `keras_alage.cli.predict` (flags, usage: `--help`); an installed package also
has it as `alage predict`.
"""

from keras_alage.cli import predict

if __name__ == "__main__":
    predict.run()
