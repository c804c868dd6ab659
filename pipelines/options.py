"""The ground floor's option lists, in a module that imports nothing: the commands build their flags
from these before TensorFlow is loaded (`--help` answers without it). Each list is defined here
only; `augment` and `dataset` use them from here."""

# Evaluation crops (`augment.preprocess_for_eval`): ten (the paper: corners, centre and their
# mirrors), the centre alone, the centre and its mirror, or the centre moved a few pixels four ways
# and all five mirrored (for networks that need their exact chip, such as dlib's: corner crops move
# it too far).
CROPS = ("ten", "center", "center_flip", "shift_flip")
# Training views (`augment`): the paper's random-sized crops with colour jitter, or the evaluation
# view shifted by a few pixels.
TRAIN_VIEWS = ("paper", "eval")
# Evaluation views (`dataset.eval_preprocess`): faces as built, or each as its fixed old print.
EVAL_VIEWS = ("as_built", "old_photo")
