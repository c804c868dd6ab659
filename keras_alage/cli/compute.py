"""The process-wide compute settings of the commands that answer faces (`alage predict`, `alage
serve`): threads (`serving.threads`) and arithmetic (`serving.precision`) from their flags
(`arguments.define_compute_flags`), set before TensorFlow's first op; a refused value is one line."""

from absl import app

from keras_alage.serving import precision, threads


def set_compute(values) -> None:
    """Threads, then precision, from parsed flags `values` (before any network is loaded or called)."""
    try:
        threads.set_threads(values.intra_op_threads, values.inter_op_threads)
    except threads.TooLate as error:
        raise app.UsageError(f"--intra_op_threads / --inter_op_threads: {error}")
    try:
        precision.set_precision(values.precision)
    except precision.NoNativeBfloat16 as error:
        raise app.UsageError(f"--precision={values.precision}: {error}")
