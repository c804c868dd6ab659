"""How far `--crops=shift_flip` should move the centre crop (`benchmarks/shift_crops.py`): its ten
crops at several shifts.

For each shift d (pixels at the model's input side; 0 is `center_flip`, the centre and its
mirror), every held-out face is answered as the centre crop moved d pixels right, left, down and
up, the centre itself, and the mirrors of all five, and the probabilities are averaged. Reported:
the MAE of the global head, the local head and their combination at several local weights, on the
faces as built and as fixed old prints (`eval_view=old_photo`). `augment.shift_pixels` holds the
chosen shift as a fraction of the input side.
"""

from typing import Callable, Optional, Sequence

import tensorflow as tf

from keras_alage.evaluation import metrics, scoring
from keras_alage.models import age_model, release
from alage_pipelines import build, dataset


def head_probs(model, data_dir: str, view: str, shift: int) -> dict:
    """`scoring.predict_dataset` of the held-out side: `shift_flip` at `shift` px (0: `center_flip`)."""
    crops = "shift_flip" if shift else "center_flip"
    preprocess = dataset.eval_preprocess(int(model.input_shape[1]), crops, view, shift)
    data = tf.data.TFRecordDataset(build.Build.open(data_dir, verify=True).first_fold_files("test")).map(preprocess).batch(32)
    return scoring.predict_dataset(model, data)


def compare(model_path: Optional[str], data_dir: str, shifts: Sequence[int], weights: Sequence[float],
            say: Callable[[str], None] = print) -> None:
    """Says the table's rows (markdown) as each view and shift is answered; a model that cannot be
    loaded is a ValueError naming --model."""
    try:
        model = release.load(model_path)[0]
    except (OSError, ValueError) as error:
        raise ValueError(f"--model: {error}")
    classes = age_model.class_ages_of(model)
    say("| view | shift (px) | global | local | " + " | ".join(f"w={w:g}" for w in weights) + " |\n"
        + "|---" * (4 + len(weights)) + "|")
    for view in ("as_built", "old_photo"):
        for shift in shifts:
            p = head_probs(model, data_dir, view, shift)
            heads = [metrics.mean_absolute_error(metrics.expected_age(p[head], classes), p["age"])
                     for head in ("global", "local")]
            cells = heads + list(scoring.local_weight_sweep(p, classes, weights).values())
            say(f"| {view} | {shift} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
