"""Measures where face-api's own face cut lies inside the release's face crop.

The command's flags and usage are `keras_alage.cli.measure_faceapi_cut_flags` (`--help` lists them), its work
`keras_alage.cli.measure_faceapi_cut`; an installed package also has it as `alage measure-faceapi-cut`.
"""

from keras_alage import cli

if __name__ == "__main__":
    cli.run_command("measure_faceapi_cut")
