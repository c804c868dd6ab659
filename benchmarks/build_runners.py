"""The TFRecord build on Beam's DaskRunner against the DirectRunner: records/s on the same photos,
in one run, with detection (no cache) in the workers.

  python benchmarks/build_runners.py                    # 300 FG-NET photos, dlib detector, 2 workers
  python benchmarks/build_runners.py --detector=mtcnn --limit=100

Both builds must come out byte for byte the same (shards and record log); the point is what the
engine costs, since detection dominates.
"""

import os

from absl import app, flags

from keras_alage import cli
from keras_alage.studies.benchmarks import build_runners
from alage_pipelines import faces

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("fgnet_dir", os.path.join(REPO, "..", "shared", "data", "fgnet"), "FG-NET as distributed.")
flags.DEFINE_integer("limit", 300, "Photos to build.")
flags.DEFINE_integer("workers", 2, "Worker processes of each runner.")
flags.DEFINE_enum("detector", "dlib", list(faces.DETECTOR_NAMES), "Face detector run in the workers.")
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    try:
        build_runners.compare(FLAGS.fgnet_dir, FLAGS.limit, FLAGS.workers, FLAGS.detector,
                              say=lambda line: print(line, flush=True))
    except ValueError as error:
        raise app.UsageError(str(error))


if __name__ == "__main__":
    cli.run(main)
