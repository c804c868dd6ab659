"""What refusing damaged JPEGs costs and catches: the project's JPEG decode (`images.decode_image`,
libjpeg-turbo stopping on its first warning) against OpenCV's decode of the same bytes, timed
alternately in one run (the ratio is what means something on this noisy machine), and how many
copies damaged in the middle (end marker kept) each refuses.

  python benchmarks/jpeg_decode.py

Writes OUTPUT.json (default docs/results/serving/jpeg_decode.json).
"""

import json
import os
import sys
import time

import cv2
import numpy as np
from absl import flags

from keras_alage import cli
from alage_pipelines import files, images

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared", "data")
flags.DEFINE_multi_string("photos", [os.path.join(SHARED, "fgnet", "images", "*.JPG"),
                                     os.path.join(SHARED, "utkface", "crop_part1", "*.jpg"),
                                     os.path.join(SHARED, "utkface", "aligned_64px", "*.jpg")],
                          "Globs of JPEG photos (quote them); each is timed on its own.")
flags.DEFINE_integer("limit", None, "Photos per glob (all by default).")
flags.DEFINE_integer("rounds", 3, "Alternating rounds.")
flags.DEFINE_string("output", os.path.join(REPO, "docs", "results", "serving", "jpeg_decode.json"), "JSON output.")
FLAGS = flags.FLAGS


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


def main(argv):
    cli.no_arguments(argv)
    steps = {"opencv": lambda data: cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR),
             "ours": lambda data: images.decode_image(np.frombuffer(data, np.uint8))}
    report = {"rounds": FLAGS.rounds, "cpu_count": os.cpu_count(), "sets": {},
              "command": " ".join(["python benchmarks/jpeg_decode.py"] + sys.argv[1:])}
    for pattern in FLAGS.photos:
        paths = cli.matching_files(pattern, "photos", FLAGS.limit)
        encoded = [open(path, "rb").read() for path in paths]
        totals = {name: 0.0 for name in steps}
        for _ in range(FLAGS.rounds):
            for name, step in steps.items():
                totals[name] += seconds(step, encoded)
        ms = {name: 1000 * total / (FLAGS.rounds * len(encoded)) for name, total in totals.items()}
        rng = np.random.default_rng(0)
        caught = {}
        for data in encoded:
            for kind, copy in damaged_copies(data, rng).items():
                counts = caught.setdefault(kind, {name: 0 for name in steps})
                for name, step in steps.items():
                    counts[name] += refused(step, copy)
        report["sets"][os.path.relpath(pattern, REPO)] = {
            "photos": len(paths), "opencv_ms": ms["opencv"], "ours_ms": ms["ours"],
            "ours_over_opencv": totals["ours"] / totals["opencv"], "damaged_copies_refused": caught,
            "good_photos_refused": {name: sum(refused(step, data) for data in encoded) for name, step in steps.items()},
            "good_photos_with_opencvs_pixels": sum(same_pixels(data) for data in encoded)}
        print(f"{pattern}: {len(paths)} photos, OpenCV {ms['opencv']:.2f} ms, ours {ms['ours']:.2f} ms "
              f"({totals['ours'] / totals['opencv']:.2f}x OpenCV's time)")
        print(f"  good photos with OpenCV's pixels: {report['sets'][os.path.relpath(pattern, REPO)]['good_photos_with_opencvs_pixels']}")
        for kind, counts in caught.items():
            print(f"  {kind}: refused by ours {counts['ours']}, by OpenCV {counts['opencv']} of {len(paths)}")
    files.write_atomically(FLAGS.output, json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    cli.run(main)
