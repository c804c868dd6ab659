"""What refusing damaged JPEGs costs and catches: the project's JPEG decode (`images.decode_image`,
libjpeg-turbo stopping on its first warning) against OpenCV's decode of the same bytes, timed
alternately in one run (the ratio is what means something on this noisy machine), and how many
copies damaged in the middle (end marker kept) each refuses.

  python benchmarks/jpeg_decode.py

Writes OUTPUT.json (default docs/results/serving/jpeg_decode.json).
"""

import json
import os
import sys

from absl import flags

from keras_alage import cli
from keras_alage.studies.benchmarks import jpeg_decode
from alage_pipelines import files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared", "data")
flags.DEFINE_multi_string("photos", [os.path.join(SHARED, "fgnet", "images", "*.JPG"),
                                     os.path.join(SHARED, "utkface", "crop_part1", "*.jpg"),
                                     os.path.join(SHARED, "utkface", "aligned_64px", "*.jpg")],
                          "Globs of JPEG photos (quote them); each is timed on its own.")
flags.DEFINE_integer("limit", None, "Photos per glob (all by default).")
flags.DEFINE_integer("rounds", 3, "Alternating rounds.")
flags.DEFINE_string("output", os.path.join(REPO, "docs", "results", "serving", "jpeg_decode.json"), "JSON output.")
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    sets = {os.path.relpath(pattern, REPO): cli.matching_files(pattern, "photos", FLAGS.limit) for pattern in FLAGS.photos}
    report = jpeg_decode.measure(sets, FLAGS.rounds, " ".join(["python benchmarks/jpeg_decode.py"] + sys.argv[1:]))
    files.write_atomically(FLAGS.output, json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    cli.run(main)
