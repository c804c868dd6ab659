"""Measures the --crop_margin that cuts detected faces like a set of ready-made face crops.

The command lives in `keras_alage.cli.measure_crop_margin` (flags, usage: `--help`); an installed package also
has it as `alage measure-crop-margin`.
"""

from keras_alage.cli import measure_crop_margin

if __name__ == "__main__":
    measure_crop_margin.run()
