"""TensorFlow imported without its native start-up messages (CUDA probing, oneDNN notices), which
it writes to file descriptor 2 before any logging setting applies. `ALAGE_VERBOSE=1` keeps them.

The commands call this before anything imports TensorFlow, and so do the build's Beam workers."""

import os
import sys

VERBOSE = os.environ.get("ALAGE_VERBOSE", "") not in ("", "0")


def import_tensorflow_quietly() -> None:
    if VERBOSE or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    sys.stderr.flush()
    os.dup2(null, 2)
    try:
        import tensorflow  # noqa: F401  (loaded here, silenced; later imports find it loaded)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
