"""Builds an AL-ResNet age model and predicts the age of a real face photo.

  python scripts/demo.py --image=../shared/data/fgnet/images/001A02.JPG

By default the released model (models/) answers, on the photo as it is (no face detection:
`scripts/predict.py` finds and cuts faces first). --weights=untrained builds a random network of
--depth / --input_size / --age_classes instead, which shows that the model runs, nothing more.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from keras_alage import cli, demo, release  # noqa: E402

flags.DEFINE_string("image", None, "Face image to predict; default: the first FG-NET photo in the shared data.")
flags.DEFINE_integer("depth", 34, "ResNet depth: 18, 34, 50, 101 or 152.")
flags.DEFINE_integer("ror_levels", 1, "1 = AL-ResNet, 2 or 3 = AL-RoR with that many shortcut levels.")
flags.DEFINE_integer("input_size", 224, "Square input size in pixels.")
flags.DEFINE_string("age_classes", "fgnet", "Class space: fgnet, morph, lap, imdb_wiki, utkface or adience.")
flags.DEFINE_string("weights", None, "Released model folder, .keras model, .weights.h5 file, or 'untrained'; "
                    "default: the released model in models/.")
flags.DEFINE_integer("top_k", 5, "How many classes to list.")
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    print(demo.run(
        image=FLAGS.image,
        depth=FLAGS.depth,
        ror_levels=FLAGS.ror_levels,
        input_size=FLAGS.input_size,
        age_classes=FLAGS.age_classes,
        weights=FLAGS.weights or release.default_path(),
        top_k=FLAGS.top_k,
    ))


if __name__ == "__main__":
    cli.run(main)
