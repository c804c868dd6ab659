"""Measures where face-api's own face cut lies inside the release's face crop.

The command lives in `keras_alage.cli.measure_faceapi_cut` (flags, usage: `--help`); an installed package also
has it as `alage measure-faceapi-cut`.
"""

from keras_alage.cli import measure_faceapi_cut

if __name__ == "__main__":
    measure_faceapi_cut.run()
