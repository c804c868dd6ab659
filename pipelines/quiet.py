"""TensorFlow imported without its native start-up messages (CUDA probing, oneDNN notices), which
it writes to file descriptor 2 before any logging setting applies. `ALAGE_VERBOSE=1` keeps them.

The commands call this before anything imports TensorFlow, and so do the build's Beam workers.
`stderr_to` sends file descriptor 2 elsewhere for a while: what native libraries and child
processes write there too (Beam's worker processes, FFmpeg's probing of encoders)."""

import contextlib
import os
import sys
from typing import Iterator

VERBOSE = os.environ.get("ALAGE_VERBOSE", "") not in ("", "0")


@contextlib.contextmanager
def stderr_to(path: str = os.devnull) -> Iterator[None]:
    """File descriptor 2 (and so `sys.stderr`, native libraries' messages and the child processes
    started meanwhile) goes to `path`, appended, until the block ends."""
    sys.stderr.flush()
    saved, target = os.dup(2), os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(target, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(target)


def import_tensorflow_quietly() -> None:
    if VERBOSE or "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with stderr_to(os.devnull):
        import tensorflow  # noqa: F401  (loaded here, silenced; later imports find it loaded)
