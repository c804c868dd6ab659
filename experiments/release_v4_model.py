"""Builds release v4 (`studies.release_v4`): v3.1's AL model and face-api's network in one folder,
answered by their mean, with a 90 % interval calibrated on validation faces.

  python experiments/release_v4_model.py --v3=models/al_dlib_resnet_utkface \
      --cut=docs/results/releases/faceapi_cut_fgnet.json --utkface=data/utkface_dlib \
      --fgnet=data/fgnet_release --output=models/al_dlib_faceapi_v4 \
      --report=docs/results/releases/release_v4.json

--utkface's held-out part ("test": the faces v3.1's choices were made on, never trained on) and
all of --fgnet's photos are the validation faces; no other face is read.
"""

import json
import os
import sys

from absl import app, flags

from keras_alage import cli
from keras_alage.studies import release_v4
from alage_pipelines import files

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
        with open(FLAGS.cut, encoding="utf-8") as f:
            cut = json.load(f)["cut"]
        staging = release_v4.assemble(FLAGS.v3, FLAGS.output, cut, FLAGS.faceapi)
        report = release_v4.calibrate_and_report(staging, {
            "utkface_held_out": {"build": FLAGS.utkface, "parts": ["test"]},
            "fgnet": {"build": FLAGS.fgnet, "parts": None},
        })
    except (OSError, ValueError, KeyError) as error:
        raise app.UsageError(str(error))
    report["cut"] = cut
    release_v4.finish(staging, FLAGS.output, report)
    report["command"] = " ".join(["python experiments/release_v4_model.py"] + sys.argv[1:])
    files.write_atomically(FLAGS.report, json.dumps(report, indent=1) + "\n")
    files.write_atomically(os.path.splitext(FLAGS.report)[0] + ".md", release_v4.markdown(report, report["command"]))
    for name, table in report["errors"].items():
        print(f"{name}: MAE " + ", ".join(f"{k} {v['all']['mae']:.2f}" for k, v in table.items() if "all" in v
                                          and "mae" in v["all"]))
    chosen = report["candidates"][str(report["chosen_scale_floor"])]
    print(f"interval scale floor {report['chosen_scale_floor']} (chosen on cross-population coverage): " + ", ".join(
        f"{k} {v['all']['coverage']:.3f}" for k, v in chosen.items()))
    print(f"wrote {FLAGS.output} and {FLAGS.report}")


if __name__ == "__main__":
    cli.run(main)
