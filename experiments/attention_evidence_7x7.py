"""The attention branch's fair test on a 7x7 map (`studies.map_evidence`): face-api's TinyXception
at 112 px on FG-NET's five subject folds, six variants, three seeds, every choice nested.

  python scripts/build_tfrecords.py --dataset=fgnet --data_dir=../shared/data/fgnet \
      --output_dir=data/fgnet_faceapi --detector=dlib --crop_size=128 --crop_margin=0.67 \
      --age_classes=utkface --protocol=subject_kfold
  python experiments/attention_evidence_7x7.py --data_dir=data/fgnet_faceapi \
      --run_dir=runs/evidence_7x7 --output=docs/results/attention/fgnet_evidence_7x7

The build's 128 px crop at margin 0.67 makes the network's 112 px centre view cover face-api's
own rectangle's width (0.911 of the release crop's 1.6 boxes: docs/results/releases/faceapi_cut_fgnet.json).
Rerunning resumes: finished runs are read back, not retrained.
"""

import json
import sys

from absl import app, flags

from keras_alage import cli
from keras_alage.studies import map_evidence
from alage_pipelines import files

flags.DEFINE_string("data_dir", None, "FG-NET build cut for face-api's network (see above).")
flags.DEFINE_string("run_dir", "runs/evidence_7x7", "Run folders (validation and test runs).")
flags.DEFINE_string("faceapi", "installed", "face-api's package (folder or npm .tgz; default: tools/face-api).")
flags.DEFINE_list("folds", None, "Folds to run (default: all).")
flags.DEFINE_string("output", None, "Output path without extension (.json and .md).")
flags.mark_flags_as_required(["data_dir", "output"])
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    try:
        study = map_evidence.Study.from_build(FLAGS.data_dir, FLAGS.run_dir, FLAGS.faceapi,
                                              log=lambda text: print(text, flush=True))
    except (OSError, ValueError) as error:
        raise app.UsageError(str(error))
    result = study.run(FLAGS.folds)
    command = " ".join(["python experiments/attention_evidence_7x7.py"] + sys.argv[1:])
    result["command"] = command
    files.write_atomically(FLAGS.output + ".json", json.dumps(result, indent=1) + "\n")
    files.write_atomically(FLAGS.output + ".md", map_evidence.markdown(result, command))
    print(map_evidence.markdown(result, command))


if __name__ == "__main__":
    cli.run(main)
