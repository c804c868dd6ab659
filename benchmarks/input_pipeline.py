"""Images/s of the tf.data training pipeline against a naive per-image OpenCV loop.

Both read the same encoded faces from the same TFRecord shards (written first from
FG-NET), do the same work (decode, random crop of random area and aspect, resize, flip,
normalise) and are timed in one run, so the printed ratio is meaningful on a noisy machine.

  python benchmarks/input_pipeline.py --data=../shared/data --images=1000 --input_size=224
"""

import os

from absl import flags

from keras_alage import cli
from keras_alage.studies.benchmarks import input_pipeline

flags.DEFINE_string("data", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"), "Shared data folder.")
flags.DEFINE_integer("images", 1000, "Images to time in each pipeline.")
flags.DEFINE_integer("input_size", 224, "Output side in pixels.")
flags.DEFINE_integer("batch_size", 32, "tf.data batch size.")
flags.DEFINE_integer("shards", 4, "TFRecord shards to write.")
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    print(input_pipeline.compare(os.path.join(FLAGS.data, "fgnet"), FLAGS.images, FLAGS.input_size, FLAGS.batch_size,
                                 FLAGS.shards))


if __name__ == "__main__":
    cli.run(main)
