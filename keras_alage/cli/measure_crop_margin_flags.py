"""Measures the --crop_margin that cuts detected faces like a set of ready-made face crops.

  python scripts/measure_crop_margin.py --images='../shared/data/utkface/crop_part1/*.jpg'

A model pretrained on ready-made crops (UTKFace's aligned chips: margin about 0.04) transfers
to a data set that scripts/build_tfrecords.py detects and crops only when both are cut alike;
build the second with the printed --crop_margin (BUILD_NOTES.md, "Real results at CPU scale").
"""

from absl import flags

from keras_alage import cli
from alage_pipelines import faces

flags.DEFINE_string("images", None, "Glob of the ready-made face crops (quote it).")
flags.DEFINE_integer("limit", 150, "Crops to measure, drawn with --seed.")
flags.DEFINE_integer("seed", 0, "Seed of the draw.")
flags.DEFINE_float("min_confidence", None, "Detector score a face needs to be measured (default: the detector's own).")
flags.DEFINE_enum("detector", "mtcnn", list(faces.DETECTOR_NAMES), "Whose box the margin is measured against.")
flags.mark_flags_as_required(["images"])
cli.require_positive("limit")
FLAGS = flags.FLAGS
