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
from keras_alage.studies.benchmarks import shift_crops

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("model", None, "Released model (default: the one in models/).")
flags.DEFINE_string("data_dir", os.path.join(REPO, "data", "utkface_dlib"), "The build whose held-out side to answer.")
flags.DEFINE_list("shifts", ["0", "1", "2", "3"], "Shifts in pixels at the input side (0: centre and mirror only).")
flags.DEFINE_list("weights", ["0.25", "0.5", "1", "2", "4"], "Local weights of the combined answer.")
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    try:
        shifts, weights = [int(s) for s in FLAGS.shifts], [float(w) for w in FLAGS.weights]
    except ValueError:
        raise app.UsageError(f"--shifts must be whole pixels and --weights numbers; received {FLAGS.shifts}, "
                             f"{FLAGS.weights}.")
    try:
        shift_crops.compare(FLAGS.model, FLAGS.data_dir, shifts, weights, say=lambda line: print(line, flush=True))
    except ValueError as error:
        raise app.UsageError(str(error))


if __name__ == "__main__":
    cli.run(main)
