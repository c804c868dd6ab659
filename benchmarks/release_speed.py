"""Photos/s of two releases on the same photos, measured alternately in one run (this machine is
noisy, so only the ratio and same-run figures mean something).

  python benchmarks/release_speed.py --old=models/al_dlib_faceapi_v4 --new=models/al_dlib_faceapi_faceres_v5 \
      --output=docs/results/serving/release_speed_v5.json

Both go through predict.py's default path (`photos.answer_photos` with the release's detector and
MTCNN where it finds none, faces batched 32 at a time); the network alone is timed on the same
faces' crops. Writes OUTPUT.json (default docs/results/serving/release_speed.json).
"""

import json
import os
import sys

from absl import app, flags

from keras_alage import cli
from keras_alage.studies.benchmarks import release_speed
from alage_pipelines import files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("old", "models/al_dlib_faceapi_v4", "The release to compare against.")
flags.DEFINE_string("new", "models/al_dlib_faceapi_faceres_v5", "The new release.")
flags.DEFINE_string("photos", os.path.join(REPO, "..", "shared", "data", "fgnet", "images", "*.JPG"), "Glob of photos.")
flags.DEFINE_integer("limit", 120, "Photos per round.")
flags.DEFINE_integer("rounds", 2, "Alternating rounds per release.")
flags.DEFINE_string("output", os.path.join(REPO, "docs", "results", "serving", "release_speed.json"), "JSON output.")
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    paths = cli.matching_files(FLAGS.photos, "photos", FLAGS.limit)
    try:
        report = release_speed.compare(FLAGS.old, FLAGS.new, paths, FLAGS.rounds,
                                       " ".join(["python benchmarks/release_speed.py"] + sys.argv[1:]))
    except ValueError as error:
        raise app.UsageError(str(error))
    files.write_atomically(FLAGS.output, json.dumps(report, indent=1) + "\n")
    print(release_speed.summary(report))


if __name__ == "__main__":
    cli.run(main)
