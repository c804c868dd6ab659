"""What `alage measure-crop-margin` does once its flags are parsed (its usage and flags:
`measure_crop_margin_flags`)."""

import random

from keras_alage import cli
from keras_alage.cli import measure_crop_margin_flags
from keras_alage.serving import face_detectors
from alage_pipelines import faces, images

FLAGS = measure_crop_margin_flags.FLAGS


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
    estimate = faces.matching_margin(crops, face_detectors.make_detector(FLAGS.detector), FLAGS.min_confidence)
    print(f"{estimate.measured} crops measured, {estimate.without_face} without a face, {unreadable} unreadable; "
          f"median face box = {estimate.face_fraction:.3f} of the crop's side")
    print(f"--detector={FLAGS.detector} --crop_margin={estimate.margin:.2f}")
