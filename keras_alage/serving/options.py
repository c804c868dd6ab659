"""The serving room's option lists and bounds, in a module that imports nothing (flags are built
from them before TensorFlow is loaded). Defined here only; `photos` and `export` use them from here."""

# A photo where no face is found: report and skip it, or answer it as one face filling its centre square.
NO_FACE = ("skip", "whole")
# TF Serving reads a version folder's name as an int64.
MAX_VERSION = 2 ** 63 - 1
# The arithmetic the networks answer in (`precision`): float32, the documented answers; bfloat16, oneDNN's
# bfloat16 kernels on a CPU that has them (faster, slightly different answers).
PRECISIONS = ("float32", "bfloat16")
# TensorFlow's threads for the networks (`threads`): one per op, as many ops at once as cores (0:
# TensorFlow's choice, one per core), so the members' independent ops run side by side.
INTRA_OP_THREADS = 1
INTER_OP_THREADS = 0
# Photos decoded, searched and cut at once ahead of the networks (`photos.answer_photos`), where the
# detector may be called from several threads (BlazeFace): big photos' decoding takes two cores.
LOCATE_WORKERS = 2
