"""The face path's choices on validation faces: the AL member's crops, and the detector.

  python benchmarks/face_path.py --study=crops        # v5 with its AL member's crops changed (~3 minutes)
  python benchmarks/face_path.py --study=detectors    # v5 through dlib and BlazeFace on FG-NET's photos
  python benchmarks/face_path.py --study=precision    # v5's answers in float32 and bfloat16
  python benchmarks/face_path.py --study=detectors --population=utkface \\
      --photos='../shared/data/utkface/crop_part1/*.jpg'

`--study=crops` scores the release on the release study's validation builds (FG-NET's, UTKFace's
held-out part, FairFace's where built) with the AL member's crops changed, the other members'
answers read from the study's cache; `--study=precision` answers the same faces with every member
afresh in float32, then bfloat16 (`--precisions`; a CPU without native bfloat16 refuses it);
`--study=detectors` answers photos through each detector with each crop choice. Each prints errors
with 95 % bootstraps over people and paired differences (`studies.benchmarks.face_path`), and
writes --output (JSON).
"""

import json
import os

from absl import app, flags

from keras_alage import cli
from keras_alage.models import release
from keras_alage.serving import precision
from keras_alage.serving.options import PRECISIONS
from keras_alage.studies.benchmarks import face_path
from alage_pipelines import files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared", "data")
flags.DEFINE_enum("study", "crops", ["crops", "precision", "detectors"], "What to vary: the AL member's crops, the "
                  "networks' arithmetic, or the detector.")
flags.DEFINE_string("model", None, "Release (default: the released model in models/).")
flags.DEFINE_list("crops", ["shift_flip", "center", "center_flip"], "The AL member's crops to compare (the first "
                  "is the reference of --study=detectors; the release's own is --study=crops').")
flags.DEFINE_list("detectors", ["dlib", "blazeface"], "Detectors to compare (the first, on the full decode, is the "
                  "reference).")
flags.DEFINE_string("fgnet_build", os.path.join(REPO, "data", "fgnet_release"), "FG-NET cut as the release cuts.")
flags.DEFINE_string("utkface_build", os.path.join(REPO, "data", "utkface_dlib"), "UTKFace cut as the release cuts "
                    "(its held-out part).")
flags.DEFINE_string("fairface_build", os.path.join(REPO, "data", "fairface_release"), "FairFace cut as the release "
                    "cuts (--study=crops and precision, where it is built).")
flags.DEFINE_string("fairface_labels", os.path.join(SHARED, "fairface"), "FairFace as distributed (labels.json).")
flags.DEFINE_string("cache", os.path.join(REPO, "runs", "release_v5"), "The release study's cached answers.")
flags.DEFINE_string("photos", os.path.join(SHARED, "fgnet", "images", "*.JPG"), "Photos for --study=detectors.")
flags.DEFINE_enum("population", "fgnet", list(face_path.LABELS), "Whose file names give the ages of --photos.")
flags.DEFINE_list("precisions", list(PRECISIONS), f"--study=precision: the precisions, of {', '.join(PRECISIONS)}, "
                  "the first the reference.")
flags.register_validator("precisions", lambda names: bool(names) and set(names) <= set(PRECISIONS),
                         message=f"--precisions takes one or more of {', '.join(PRECISIONS)}")
flags.DEFINE_string("output", None, "Write the report here (JSON).")
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    model = FLAGS.model or release.default_path()
    log = lambda text: print(text, flush=True)  # noqa: E731
    populations = {"fgnet": (FLAGS.fgnet_build, None), "utkface": (FLAGS.utkface_build, ["test"])}
    if os.path.isdir(FLAGS.fairface_build):  # the one population no network saw
        populations["fairface"] = (FLAGS.fairface_build, None, FLAGS.fairface_labels)
    if FLAGS.study == "crops":
        report = face_path.score_crops(model, populations, FLAGS.cache, FLAGS.crops, log=log)
    elif FLAGS.study == "precision":
        try:
            report = face_path.score_precision(model, populations, FLAGS.precisions, log=log)
        except precision.NoNativeBfloat16 as error:
            raise app.UsageError(f"--precisions: {error}")
    else:
        report = face_path.compare(cli.matching_files(FLAGS.photos, "photos", None), model, FLAGS.detectors,
                                   FLAGS.crops[:2], FLAGS.population, log=log)
    text = json.dumps(report, indent=1)
    if FLAGS.output:
        files.write_atomically(FLAGS.output, text)
    print(text)


if __name__ == "__main__":
    cli.run(main)
