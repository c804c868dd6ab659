"""Evaluates trained models with the paper's protocol: each fold's test side, ten-crop.

  python scripts/evaluate.py --data_dir=data/fgnet --run_dir=runs/fgnet/attention
  python scripts/evaluate.py --data_dir=data/fgnet --fold=fold0 --model=runs/x/fold0/model.keras

Reports per fold and mean +- std across folds, for the global head, the local head and the
combined prediction: MAE, CS@5, per-age-band MAE, epsilon-error where labels carry a
standard deviation (LAP), exact and one-off accuracy for age groups (Adience). Writes
results.json and results.md to --output_dir (default: --run_dir for the run's own build and
ten crops, else a folder of their own in it). A model is only scored on test photos it did not
train on: the run's run.json names its build, and another build's test side is checked
against that build's training side.
"""

from absl import flags

from keras_alage import cli
from keras_alage.evaluation.options import HEADS
from alage_pipelines.options import CROPS, EVAL_VIEWS

flags.DEFINE_string("data_dir", None, "TFRecord build the models were trained on.")
flags.DEFINE_list("fold", ["all"], "Fold(s) to evaluate, or 'all'.")
flags.DEFINE_string("run_dir", None, "Run of scripts/train.py: <run_dir>/<fold>/model.keras per fold.")
flags.DEFINE_string("model", None, "One .keras model for every requested fold (instead of --run_dir).")
flags.DEFINE_enum("crops", "ten", list(CROPS), "Ten-crop (the paper), the "
                  "centre crop, the centre and its mirror, or the centre shifted 1/32 four ways and all mirrored.")
flags.DEFINE_integer("batch_size", 16, "Images per batch.")
flags.DEFINE_string("output_dir", None, "Where results.json and results.md go; default: --run_dir for its own build "
                    "with ten crops, else <run_dir>/eval-<build>-<hash>-<crops>/ (never another evaluation's report).")
flags.DEFINE_list("group_by", [], "Record attributes to break the MAE down by (UTKFace: gender,race).")
flags.DEFINE_list("local_weights", [], "Also report the combined MAE at these local weights (the paper's lambda; "
                  "0 = global head only), to choose it on validation data.")
flags.DEFINE_enum("group_head", "combined", list(HEADS), "Head whose MAE --group_by breaks down.")
flags.DEFINE_enum("eval_view", "as_built", list(EVAL_VIEWS), "Faces as built, or each as its fixed old "
                  "scanned print (a shifted population made from the build, for choices without the test set).")
flags.mark_flags_as_required(["data_dir"])
cli.require_positive("batch_size")
FLAGS = flags.FLAGS
