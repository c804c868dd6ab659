"""Builds face-cropped TFRecords of a data set in its distributed layout, with a manifest.

The command lives in `keras_alage.cli.build_tfrecords` (flags, usage: `--help`); an installed package also
has it as `alage build-tfrecords`.
"""

from keras_alage.cli import build_tfrecords

if __name__ == "__main__":
    build_tfrecords.run()
