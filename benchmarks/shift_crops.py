"""How far `--crops=shift_flip` should move the centre crop: its ten crops at several shifts.

  python benchmarks/shift_crops.py --shifts=0,1,2,3      # the release on UTKFace's held-out views, ~6 minutes

For each shift d (pixels at the model's input side; 0 is `center_flip`, the centre and its
mirror), every held-out face is answered as the centre crop moved d pixels right, left, down and
up, the centre itself, and the mirrors of all five, and the probabilities are averaged. Printed:
the MAE of the global head, the local head and their combination at several local weights, on the
faces as built and as fixed old prints (`--eval_view=old_photo`). `augment.shift_pixels` holds
the chosen shift as a fraction of the input side.
"""

import os

from absl import app, flags

from keras_alage import cli
from keras_alage.evaluation import metrics, scoring
from keras_alage.models import age_model, release
from alage_pipelines import build, dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("model", None, "Released model (default: the one in models/).")
flags.DEFINE_string("data_dir", os.path.join(REPO, "data", "utkface_dlib"), "The build whose held-out side to answer.")
flags.DEFINE_list("shifts", ["0", "1", "2", "3"], "Shifts in pixels at the input side (0: centre and mirror only).")
flags.DEFINE_list("weights", ["0.25", "0.5", "1", "2", "4"], "Local weights of the combined answer.")
FLAGS = flags.FLAGS


def head_probs(model, data_dir: str, view: str, shift: int) -> dict:
    """`scoring.predict_dataset` of the held-out side: `shift_flip` at `shift` px (0: `center_flip`)."""
    import tensorflow as tf

    crops = "shift_flip" if shift else "center_flip"
    preprocess = dataset.eval_preprocess(int(model.input_shape[1]), crops, view, shift)
    data = tf.data.TFRecordDataset(build.Build.open(data_dir, verify=True).first_fold_files("test")).map(preprocess).batch(32)
    return scoring.predict_dataset(model, data)


def main(argv):
    cli.no_arguments(argv)

    try:
        shifts, weights = [int(s) for s in FLAGS.shifts], [float(w) for w in FLAGS.weights]
    except ValueError:
        raise app.UsageError(f"--shifts must be whole pixels and --weights numbers; received {FLAGS.shifts}, "
                             f"{FLAGS.weights}.")
    try:
        model = release.load(FLAGS.model)[0]
    except (OSError, ValueError) as error:
        raise app.UsageError(f"--model: {error}")
    classes = age_model.class_ages_of(model)
    header = "| view | shift (px) | global | local | " + " | ".join(f"w={w:g}" for w in weights) + " |"
    print(header + "\n" + "|---" * (4 + len(weights)) + "|")
    for view in ("as_built", "old_photo"):
        for shift in shifts:
            p = head_probs(model, FLAGS.data_dir, view, shift)
            heads = [metrics.mean_absolute_error(metrics.expected_age(p[head], classes), p["age"])
                     for head in ("global", "local")]
            cells = heads + list(scoring.local_weight_sweep(p, classes, weights).values())
            print(f"| {view} | {shift} | " + " | ".join(f"{c:.3f}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    cli.run(main)
