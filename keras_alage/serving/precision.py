"""The arithmetic the age networks answer in (`options.PRECISIONS`), set for the whole process.

"float32" is the documented answer. "bfloat16" turns on grappler's oneDNN auto mixed precision
(`auto_mixed_precision_onednn_bfloat16`): each tf.function's float32 matmuls and convolutions run in
bfloat16 on the CPU, faster where the CPU has bfloat16 natively (AVX512_BF16, AMX_BF16), with
slightly different answers. Where it has not, bfloat16 is refused (emulated it is slower, not faster).

Set it before the first tf.function call. TensorFlow reads the option at each call from a copy a
thread takes at its first call (TF 2.21, measured): set in the thread that answers, it holds from
that thread's next call on, even of a function traced before; a thread that already made a call
keeps the precision it had. BlazeFace's detector answers in its own session and stays float32.
"""

import contextlib
from typing import FrozenSet, Iterator

import tensorflow as tf

from keras_alage.serving.options import PRECISIONS

# grappler's option, and the CPU flags (/proc/cpuinfo, Linux) that carry bfloat16 natively.
BFLOAT16_OPTION = "auto_mixed_precision_onednn_bfloat16"
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
CPUINFO = "/proc/cpuinfo"


class NoNativeBfloat16(ValueError):
    """bfloat16 asked for on a CPU without native bfloat16."""


def cpu_flags(path: str = CPUINFO) -> FrozenSet[str]:
    """The CPU's feature flags as Linux lists them; none where the file cannot be read (another OS)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


def native_bfloat16() -> bool:
    return bool(set(BFLOAT16_CPU_FLAGS) & cpu_flags())


def check(precision: str) -> None:
    """Raises ValueError for a precision not in `PRECISIONS`, NoNativeBfloat16 for bfloat16 on a CPU
    without it; touches nothing."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; received {precision!r}.")
    if precision == "bfloat16" and not native_bfloat16():
        raise NoNativeBfloat16(f"this CPU has no native bfloat16 (none of {', '.join(BFLOAT16_CPU_FLAGS)} among "
                               f"its flags in {CPUINFO}), so float32 is the choice here.")


def current() -> str:
    """The precision the process is set to."""
    return "bfloat16" if tf.config.optimizer.get_experimental_options().get(BFLOAT16_OPTION) else "float32"


def set_precision(precision: str) -> None:
    """Sets the process's precision (`check` first). float32 in a process never set to bfloat16
    changes nothing; it turns bfloat16 off where it was on. Call it before the first tf.function
    call (module docstring)."""
    check(precision)
    if precision == "bfloat16":
        tf.config.optimizer.set_experimental_options({BFLOAT16_OPTION: True})
    elif current() == "bfloat16":
        tf.config.optimizer.set_experimental_options({BFLOAT16_OPTION: False})


@contextlib.contextmanager
def using(precision: str) -> Iterator[None]:
    """`precision` for the calls this thread makes in the block, the process's own after it: settings
    alternating in one process (a benchmark, a study), or a test that must leave float32 behind."""
    before = current()
    set_precision(precision)
    try:
        yield
    finally:
        set_precision(before)
