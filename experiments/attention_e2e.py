"""The paper's AL network trained end to end on face-api's TinyXception (112 px, 7x7 map) and its fair
test against an equal-step control, scored on UTKFace held-out, FG-NET and FairFace
(`studies.attention_e2e`, issue 35).

  python experiments/attention_e2e.py --run_dir=runs/evidence_e2e --output=docs/results/attention/e2e
  make evidence-e2e      # the same in the background, a log in runs/evidence_e2e/log.txt

Rerunning resumes: finished runs, teachers' answers and predictions are read back, an interrupted run
continues after its last epoch. One run at a time holds --run_dir. --smoke runs the tiny recipe on a
few faces of each population (minutes), into its own --run_dir.
"""

import dataclasses
import sys

from absl import app, flags

from keras_alage import cli
from keras_alage.studies import attention_e2e
from alage_pipelines import files

# The real recipe, sized to finish in about 40 minutes on 2 CPU cores: an epoch draws 6,000 augmented
# training faces and is validated on all 2,050 held-aside ones. The global stage chooses the teacher
# weight (0 or 1) at rate 0.01, stepped down tenfold after epoch 7 of 10 so it settles within the
# budget (the rate is fixed, not chosen); the attention stage chooses its rate among 0.001-0.01 over
# 6 epochs; memory is carried over 300 faces of each population.
RECIPE = attention_e2e.Recipe(teacher_weights=(0.0, 1.0), global_rates=(0.01,), global_epochs=10,
                              global_decay_epoch=7, epoch_faces=6000, attention_rates=(0.001, 0.003, 0.01),
                              attention_epochs=6, memory_limit=300)
SMOKE = dataclasses.replace(RECIPE, global_rates=(0.003, 0.01), global_epochs=2, global_decay_epoch=None,
                            epoch_faces=None, attention_rates=(0.01, 0.03), attention_epochs=2,
                            local_weights=(0.0, 0.5, 1.0), train_limit=64, memory_limit=12, translation_faces=8,
                            batch_size=16)

flags.DEFINE_string("utkface", "data/utkface_dlib", "UTKFace build cut as the release cuts (train and test parts).")
flags.DEFINE_string("fgnet", "data/fgnet_release", "FG-NET build cut as the release cuts (5 subject folds).")
flags.DEFINE_string("fairface", "data/fairface_release", "FairFace build cut as the release cuts.")
flags.DEFINE_string("fairface_labels", "../shared/data/fairface", "FairFace as distributed (labels.json).")
flags.DEFINE_string("teachers", "models/al_dlib_faceapi_faceres_v5", "Release v5: its three networks teach.")
flags.DEFINE_string("faceapi", "installed", "face-api's package (the backbone's start; default: tools/face-api).")
flags.DEFINE_string("run_dir", "runs/evidence_e2e", "The study's runs, caches and choices (resumed).")
flags.DEFINE_string("output", None, "Report path without extension (.json and .md).")
flags.DEFINE_bool("smoke", False, "The tiny recipe on a few faces (a check that the study runs, not a result).")
flags.mark_flags_as_required(["output"])
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    recipe = SMOKE if FLAGS.smoke else RECIPE
    with files.folder_lock(FLAGS.run_dir, "the attention study"):
        try:
            study = attention_e2e.open_study(FLAGS.utkface, FLAGS.fgnet, FLAGS.fairface, FLAGS.fairface_labels,
                                             FLAGS.teachers, FLAGS.faceapi, FLAGS.run_dir, recipe,
                                             log=lambda text: print(text, flush=True))
        except (OSError, ValueError) as error:
            raise app.UsageError(str(error))
        report = study.run()
    command = " ".join(["python experiments/attention_e2e.py"] + sys.argv[1:])
    print(attention_e2e.write_report(report, FLAGS.output, command))


if __name__ == "__main__":
    cli.run(main)
