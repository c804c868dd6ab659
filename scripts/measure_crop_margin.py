"""Measures the --crop_margin that cuts detected faces like a set of ready-made face crops.

The command's flags and usage are `keras_alage.cli.measure_crop_margin_flags` (`--help` lists them), its work
`keras_alage.cli.measure_crop_margin`; an installed package also has it as `alage measure-crop-margin`.
"""

from keras_alage import cli

if __name__ == "__main__":
    cli.run_command("measure_crop_margin")
