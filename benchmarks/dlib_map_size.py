"""Does dlib's age network keep its accuracy at a size whose last map is 7x7? Its layout is fully
convolutional, so the released model's weights run at any input; at 120 px its map is 7x7 (64 px:
3x3). Scores the global head (dlib's network) on UTKFace's held-out faces, centre view, at each size.

  python benchmarks/dlib_map_size.py --data_dir=data/utkface_dlib --sizes=64,96,120
"""

import json
import os
import sys

from absl import flags

from keras_alage import cli
from keras_alage.studies.benchmarks import dlib_map_size
from alage_pipelines import files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("model", os.path.join(REPO, "models", "al_dlib_resnet_utkface"), "A one-network dlib-layout release.")
flags.DEFINE_string("data_dir", "data/utkface_dlib", "Its build (the held-out part is scored).")
flags.DEFINE_list("sizes", ["64", "96", "120"], "Input sizes.")
flags.DEFINE_string("output", os.path.join(REPO, "docs", "results", "attention", "dlib_map_size.json"), "JSON output.")
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    rows = dlib_map_size.measure(FLAGS.model, FLAGS.data_dir, [int(s) for s in FLAGS.sizes],
                                 say=lambda line: print(line, flush=True))
    report = {"model": os.path.relpath(FLAGS.model, REPO), "sizes": rows,
              "command": " ".join(["python benchmarks/dlib_map_size.py"] + sys.argv[1:])}
    files.write_atomically(FLAGS.output, json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    cli.run(main)
