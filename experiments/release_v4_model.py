"""Builds release v4, the two-network release (`studies.releases.two_networks`): v3.1's AL model
and face-api's network in one folder, answered by their mean, with a 90 % interval calibrated on
validation faces.

  python experiments/release_v4_model.py --v3=models/al_dlib_resnet_utkface \
      --cut=docs/results/releases/faceapi_cut_fgnet.json --utkface=data/utkface_dlib \
      --fgnet=data/fgnet_release --output=models/al_dlib_faceapi_v4 \
      --report=docs/results/releases/release_v4.json

--utkface's held-out part ("test": the faces v3.1's choices were made on, never trained on) and
all of --fgnet's photos are the validation faces; no other face is read.
"""

import sys

from absl import app, flags

from keras_alage import cli
from keras_alage.studies.releases import two_networks

flags.DEFINE_string("v3", None, "The released AL model whose answer is combined (v3.1's folder).")
flags.DEFINE_string("cut", None, "face-api's cut inside the release crop (scripts/measure_faceapi_cut.py's JSON).")
flags.DEFINE_string("utkface", None, "UTKFace build cut as the release cuts (its held-out part is used).")
flags.DEFINE_string("fgnet", None, "FG-NET build cut as the release cuts (all of it is used).")
flags.DEFINE_string("faceapi", "installed", "face-api's package (folder or npm .tgz; default: tools/face-api).")
flags.DEFINE_string("output", None, "The v4 release folder (replaced only when complete).")
flags.DEFINE_string("report", None, "JSON report: cut, errors per band and sex, coverage, interval table.")
flags.mark_flags_as_required(["v3", "cut", "utkface", "fgnet", "output", "report"])
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    try:
        report = two_networks.build_release(FLAGS.v3, FLAGS.cut, FLAGS.utkface, FLAGS.fgnet, FLAGS.faceapi,
                                            FLAGS.output, FLAGS.report,
                                            " ".join(["python experiments/release_v4_model.py"] + sys.argv[1:]))
    except (OSError, ValueError, KeyError) as error:
        raise app.UsageError(str(error))
    print(two_networks.summary(report, FLAGS.output, FLAGS.report))


if __name__ == "__main__":
    cli.run(main)
