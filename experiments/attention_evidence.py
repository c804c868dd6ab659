"""What the attention branch adds: the controlled comparison and the box study of
experiments/attention_evidence.sh, as docs/results/attention/fgnet_evidence.{json,md} and a box grid.

  python experiments/attention_evidence.py --data_dir=data/fgnet_release --reference=a \
      --variant=a=runs/evidence/test/a --variant=d=runs/evidence/test/d ... --output=docs/results/attention/fgnet_evidence
  python experiments/attention_evidence.py --data_dir=data/fgnet_release --print_mean_box=runs/evidence/validation/d/X

A variant's folder holds seed<k>/ runs (or is one run) of per-fold folders. Each fold's model is
scored on the side it was evaluated on after training (test folds; validation parts with
--print_mean_box). Per face, the absolute error is averaged over the seeds; the paired differences
to the reference and all intervals are subject-bootstrap 95% over FG-NET's people.
"""

import glob
import os

from absl import app, flags

from keras_alage import cli
from keras_alage.studies import attention_evidence

flags.DEFINE_string("data_dir", None, "The build the variants trained on.")
flags.DEFINE_multi_string("variant", [], "name=folder of seed<k>/ runs (or one run).")
flags.DEFINE_string("reference", None, "The variant the paired differences are taken against.")
flags.DEFINE_string("chosen", "", "What validation chose, as a line for the report.")
flags.DEFINE_string("validation_dir", None, "The validation runs (<variant>/<setting>/): their MAE and boxes "
                    "are tabulated as the levers on the box.")
flags.DEFINE_string("output", None, "Output path without extension: .json, .md and _boxes.jpg are written.")
flags.DEFINE_string("print_mean_box", None, "A run folder: print its mean box (x,y,w,h on the input) over the faces "
                    "of the side each fold was evaluated on, and stop.")
flags.DEFINE_list("lever_variants", ["d", "c"], "The validation variants whose settings are tabulated as levers.")
flags.DEFINE_string("grid_variant", "d", "The variant whose boxes are drawn.")
flags.DEFINE_multi_string("local_weight_of", [], "name=validation run: tabulate its combined MAE for each local "
                          "weight on its held-out parts.")
flags.DEFINE_integer("translation_faces", 64, "Test faces per fold in the translation test.")
flags.DEFINE_integer("grid_faces", 24, "Test faces drawn in the box grid.")
FLAGS = flags.FLAGS


def _runs_of(folder):
    seeds = sorted(d for d in glob.glob(os.path.join(folder, "seed*")) if os.path.isdir(d))
    return seeds or [folder]


def main(argv):
    del argv

    if not FLAGS.data_dir:
        raise app.UsageError("--data_dir is required.")
    if FLAGS.print_mean_box:
        folds = attention_evidence.fold_dirs(FLAGS.print_mean_box, FLAGS.data_dir)
        if not folds:
            raise app.UsageError(f"--print_mean_box: {FLAGS.print_mean_box} holds no fold folder.")
        box = attention_evidence.mean_box(folds, FLAGS.data_dir)
        print(",".join(f"{v:.6f}" for v in box))
        return
    variants = {}
    for item in FLAGS.variant:
        name, _, folder = item.partition("=")
        if not name or not folder or not os.path.isdir(folder):
            raise app.UsageError(f"--variant={item}: expected name=folder of an existing folder.")
        variants[name] = [attention_evidence.fold_dirs(run, FLAGS.data_dir) for run in _runs_of(folder)]
        if not all(variants[name]):
            raise app.UsageError(f"--variant={item}: a run in it holds no fold folder.")
    if FLAGS.reference not in variants:
        raise app.UsageError(f"--reference={FLAGS.reference} is not among the variants {sorted(variants)}.")
    if not FLAGS.output:
        raise app.UsageError("--output is required.")
    levers = (attention_evidence.validation_levers(FLAGS.validation_dir, FLAGS.data_dir, FLAGS.lever_variants)
              if FLAGS.validation_dir else [])
    summary = attention_evidence.compare_variants(variants, FLAGS.data_dir, FLAGS.reference,
                                                  FLAGS.translation_faces, FLAGS.grid_faces,
                                                  FLAGS.output + "_boxes.jpg", FLAGS.grid_variant)
    summary["validation_chose"] = FLAGS.chosen
    summary["local_weight_on_validation"] = {}
    for item in FLAGS.local_weight_of:
        name, _, run_dir = item.partition("=")
        summary["local_weight_on_validation"][name] = attention_evidence.local_weight_on_validation(run_dir,
                                                                                                     FLAGS.data_dir)
    summary["levers"] = levers
    attention_evidence.write_summary(summary, FLAGS.output)
    print(open(FLAGS.output + ".md", encoding="utf-8").read())


if __name__ == "__main__":
    cli.run(main)
