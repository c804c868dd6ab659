"""Builds face-cropped TFRecords of a data set in its distributed layout, with a manifest.

The command's flags and usage are `keras_alage.cli.build_tfrecords_flags` (`--help` lists them), its work
`keras_alage.cli.build_tfrecords`; an installed package also has it as `alage build-tfrecords`.
"""

from keras_alage import cli

if __name__ == "__main__":
    cli.run_command("build_tfrecords")
