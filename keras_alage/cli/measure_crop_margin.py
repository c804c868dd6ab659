"""Measures the --crop_margin that cuts detected faces like a set of ready-made face crops.

  python scripts/measure_crop_margin.py --images='../shared/data/utkface/crop_part1/*.jpg'

A model pretrained on ready-made crops (UTKFace's aligned chips: margin about 0.04) transfers
to a data set that scripts/build_tfrecords.py detects and crops only when both are cut alike;
build the second with the printed --crop_margin (BUILD_NOTES.md, "Real results at CPU scale").
"""

import random

from absl import flags

from keras_alage import cli
from alage_pipelines import faces, images

flags.DEFINE_string("images", None, "Glob of the ready-made face crops (quote it).")
flags.DEFINE_integer("limit", 150, "Crops to measure, drawn with --seed.")
flags.DEFINE_integer("seed", 0, "Seed of the draw.")
flags.DEFINE_float("min_confidence", None, "Detector score a face needs to be measured (default: the detector's own).")
flags.DEFINE_enum("detector", "mtcnn", list(faces.DETECTOR_NAMES), "Whose box the margin is measured against.")
flags.mark_flags_as_required(["images"])
cli.require_positive("limit")
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    paths = cli.matching_files(FLAGS.images, "images")
    random.Random(FLAGS.seed).shuffle(paths)
    crops, unreadable = [], 0
    for path in paths[: FLAGS.limit]:
        try:
            crops.append(images.read_image(path))
        except images.ImageError as error:
            unreadable += 1
            print(f"skipped: {error}")
    estimate = faces.matching_margin(crops, faces.make_detector(FLAGS.detector), FLAGS.min_confidence)
    print(f"{estimate.measured} crops measured, {estimate.without_face} without a face, {unreadable} unreadable; "
          f"median face box = {estimate.face_fraction:.3f} of the crop's side")
    print(f"--detector={FLAGS.detector} --crop_margin={estimate.margin:.2f}")


def run() -> None:
    """The command's entry point (`scripts/measure_crop_margin.py`, `alage measure-crop-margin`)."""
    cli.run(main)


if __name__ == "__main__":
    run()
