"""What refusing damaged JPEGs costs and catches (`benchmarks/jpeg_decode.py`): the project's JPEG
decode (`images.decode_image`, libjpeg-turbo stopping on its first warning) against OpenCV's decode
of the same bytes, timed alternately in one run (the ratio is what means something on this noisy
machine), and how many copies damaged in the middle (end marker kept) each refuses.
"""

import os
import time
from typing import Callable, Dict, Sequence

import cv2
import numpy as np

from alage_pipelines import images

STEPS = {"opencv": lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
         "ours": lambda data: images.decode_image(np.frombuffer(data, np.uint8))}


def seconds(step, encoded) -> float:
    started = time.perf_counter()
    for data in encoded:
        step(data)
    return time.perf_counter() - started


def damaged_copies(data: bytes, rng):
    """One copy per kind of damage, each at the middle of the file with the end marker kept."""
    middle = len(data) // 2
    return {
        "cut, end marker appended": data[:middle] + b"\xff\xd9",
        "32 bytes lost": data[:middle] + data[middle + 32:],
        "64 bytes zeroed": data[:middle] + bytes(64) + data[middle + 64:],
        "16 random bytes": data[:middle] + rng.integers(0, 256, 16, dtype=np.uint8).tobytes() + data[middle + 16:],
        "one bit flipped": data[:middle] + bytes([data[middle] ^ 0x10]) + data[middle + 1:],
    }


def refused(step, data) -> bool:
    try:
        return step(data) is None  # OpenCV answers None for what it cannot decode
    except (images.ImageError, cv2.error):
        return True


def same_pixels(data) -> bool:
    opencv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    opencv = cv2.cvtColor(opencv, cv2.COLOR_GRAY2RGB if opencv.ndim == 2 else cv2.COLOR_BGR2RGB)
    return np.array_equal(images.decode_image(np.frombuffer(data, np.uint8)), opencv)


def measure(photo_sets: Dict[str, Sequence[str]], rounds: int, command: str,
            say: Callable[[str], None] = print) -> dict:
    """For each named set of JPEG paths: both decoders' ms per photo over `rounds` alternating
    rounds, the damaged copies each refuses, good photos refused, and good photos decoded to
    OpenCV's pixels; each set's lines said through `say`."""
    report = {"rounds": rounds, "cpu_count": os.cpu_count(), "sets": {}, "command": command}
    for name, paths in photo_sets.items():
        encoded = []
        for path in paths:
            with open(path, "rb") as f:
                encoded.append(f.read())
        totals = {step: 0.0 for step in STEPS}
        for _ in range(rounds):
            for step_name, step in STEPS.items():
                totals[step_name] += seconds(step, encoded)
        ms = {step: 1000 * total / (rounds * len(encoded)) for step, total in totals.items()}
        rng = np.random.default_rng(0)
        caught = {}
        for data in encoded:
            for kind, copy in damaged_copies(data, rng).items():
                counts = caught.setdefault(kind, {step: 0 for step in STEPS})
                for step_name, step in STEPS.items():
                    counts[step_name] += refused(step, copy)
        report["sets"][name] = {
            "photos": len(paths), "opencv_ms": ms["opencv"], "ours_ms": ms["ours"],
            "ours_over_opencv": totals["ours"] / totals["opencv"], "damaged_copies_refused": caught,
            "good_photos_refused": {step_name: sum(refused(step, data) for data in encoded)
                                    for step_name, step in STEPS.items()},
            "good_photos_with_opencvs_pixels": sum(same_pixels(data) for data in encoded)}
        say(f"{name}: {len(paths)} photos, OpenCV {ms['opencv']:.2f} ms, ours {ms['ours']:.2f} ms "
            f"({totals['ours'] / totals['opencv']:.2f}x OpenCV's time)")
        say(f"  good photos with OpenCV's pixels: {report['sets'][name]['good_photos_with_opencvs_pixels']}")
        for kind, counts in caught.items():
            say(f"  {kind}: refused by ours {counts['ours']}, by OpenCV {counts['opencv']} of {len(paths)}")
    return report
