"""Builds a three-network release (`studies.releases.three_networks`): v4's networks and HSE's
faceres-deep, the AL member's crops and the combining rule chosen leave one population out, with
a 90 % interval per predicted sex and age band. v5.1, the default model (`make release`):

  python experiments/release_v5_model.py --v4=models/al_dlib_faceapi_v4 --fgnet_photos=../shared/data/fgnet \
      --utkface=data/utkface_dlib --fgnet=data/fgnet_release --fairface=data/fairface_release \
      --fairface_labels=../shared/data/fairface --name=v5.1 --output=models/al_dlib_faceapi_faceres_v5_1 \
      --report=docs/results/releases/release_v5_1.json

v5 (`make release-v5`) kept v4's ten crops without a choice: --al_crops=shift_flip --name=v5.

The members' answers are cached in --cache (rerunning resumes from it). Every choice is scored
leaving one population out; the errors reported for a population come from the rule fitted without
it ("v5_final": the released rule, fitted on all three).
"""

import sys

from absl import flags

from keras_alage import cli
from keras_alage.studies.releases import three_networks
from alage_pipelines.options import CROPS

flags.DEFINE_string("v4", None, "Release v4's folder (its AL model and face-api's network are v5's first members).")
flags.DEFINE_string("fgnet_photos", None, "FG-NET as distributed (images/ and points/): faceres's cut is measured on it.")
flags.DEFINE_string("utkface", None, "UTKFace build cut as the release cuts (its held-out part is used).")
flags.DEFINE_string("fgnet", None, "FG-NET build cut as the release cuts (all of it).")
flags.DEFINE_string("fairface", None, "FairFace build cut as the release cuts (all of it).")
flags.DEFINE_string("fairface_labels", None, "FairFace as distributed (labels.json with the age groups).")
flags.DEFINE_string("faceres", "installed", "faceres-deep's package (folder or npm .tgz; default: tools/face-api).")
flags.DEFINE_string("cache", "runs/release_v5", "Folder for the cut and the members' answers.")
flags.DEFINE_list("al_crops", list(three_networks.AL_CROPS),
                  f"The AL member's candidate crops (of {', '.join(CROPS)}).")
flags.register_validator("al_crops", lambda names: bool(names) and set(names) <= set(CROPS),
                         message=f"--al_crops must name one or more of {', '.join(CROPS)}.")
flags.DEFINE_string("name", None, "The release's name, as model.json and the report give it (v5.1).")
flags.DEFINE_string("output", None, "The release's folder (replaced only when complete).")
flags.DEFINE_string("report", None, "JSON report (choices, errors, coverage); a .md beside it.")
flags.mark_flags_as_required(["v4", "fgnet_photos", "utkface", "fgnet", "fairface", "fairface_labels", "output",
                              "report", "name"])
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    report = three_networks.build_release(FLAGS.v4, FLAGS.fgnet_photos, FLAGS.utkface, FLAGS.fgnet, FLAGS.fairface,
                                          FLAGS.fairface_labels, FLAGS.faceres, FLAGS.cache, FLAGS.output, FLAGS.report,
                                          " ".join(["python experiments/release_v5_model.py"] + sys.argv[1:]),
                                          FLAGS.name, FLAGS.al_crops)
    print(three_networks.summary(report, FLAGS.output, FLAGS.report))


if __name__ == "__main__":
    cli.run(main)
