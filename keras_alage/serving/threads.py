"""How the age networks' ops share the CPU (`options.INTRA_OP_THREADS`, `INTER_OP_THREADS`), set for
the whole process before TensorFlow's first op.

TensorFlow's default splits every op over every core and runs as many ops at once as there are cores.
A release answers with three networks whose ops are independent of each other's, in batches of up
to 32 faces: one thread per op, as many ops at once as cores, runs them side by side instead, and
saves the threads of one op waiting (spinning) for each other. On this project's 2-core CPU, video
went from 28 to 41 frames a second and 4000x3000 JPEGs from 12.6 to 14.2 a second
(docs/performance.md); with many cores, an op may want more than one.
"""

import tensorflow as tf

from keras_alage.serving.options import INTER_OP_THREADS, INTRA_OP_THREADS


class TooLate(ValueError):
    """Threads asked for once TensorFlow's runtime has started (they are fixed then)."""


def current() -> tuple:
    """(intra-op, inter-op) threads as the process has them (0: TensorFlow's choice)."""
    return (tf.config.threading.get_intra_op_parallelism_threads(),
            tf.config.threading.get_inter_op_parallelism_threads())


def set_threads(intra_op: int = INTRA_OP_THREADS, inter_op: int = INTER_OP_THREADS) -> None:
    """Threads per op and ops at once for this process (0: TensorFlow's choice, one per core). A
    ValueError for a negative count; TooLate once TensorFlow has run an op, unless they are
    already what is asked (TensorFlow takes an unchanged count at any time)."""
    if intra_op < 0 or inter_op < 0:
        raise ValueError(f"thread counts must be 0 (TensorFlow's choice) or more; received {intra_op}, {inter_op}.")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError:
        intra, inter = current()
        raise TooLate(f"TensorFlow has started already, with {intra} thread(s) per op and {inter} op(s) at once "
                      "(0: one per core); set threads before its first op.") from None
