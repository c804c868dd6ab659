"""Measures where face-api's own face cut lies inside the release's face crop.

  python scripts/measure_faceapi_cut.py --dataset=fgnet --data_dir=../shared/data/fgnet \
      --output=docs/results/releases/faceapi_cut.json

Each photo's face is cut as the release cuts it (`--model`'s recorded crop); face-api's own
pipeline (its detector and 68 landmarks, run by Node from tools/face-api) then finds its
`alignedRect` inside that crop. The median rectangle is the cut the release gives face-api's
network (`studies.faceapi_cut`); no age label chooses it.
"""

from absl import flags

from keras_alage import cli
from alage_pipelines import sources

flags.DEFINE_enum("dataset", "fgnet", sorted(sources.SOURCES), "Data set whose photos are measured.")
flags.DEFINE_string("data_dir", None, "The data set's folder, as --dataset's reader takes it.")
flags.DEFINE_string("model", None, "Released model whose face crop is used (default: the default release).")
flags.DEFINE_integer("limit", 300, "Photos to measure, drawn with --seed.")
flags.DEFINE_integer("seed", 0, "Seed of the draw.")
flags.DEFINE_string("output", None, "JSON file for the measurement (written atomically).")
flags.mark_flags_as_required(["data_dir", "output"])
cli.require_positive("limit")
FLAGS = flags.FLAGS
