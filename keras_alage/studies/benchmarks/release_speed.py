"""Photos/s of two releases on the same photos, measured alternately in one run (`benchmarks/
release_speed.py`; this machine is noisy, so only the ratio and same-run figures mean something).

Both go through predict.py's default path (`photos.answer_photos` with the release's detector and
MTCNN where it finds none, faces batched 32 at a time); the network alone is timed on the same
faces' crops.
"""

import os
import time
from typing import Sequence

from keras_alage.serving import photos


def timed_photos(paths, predict, detector, spec) -> float:
    started = time.perf_counter()
    for _ in photos.answer_photos(paths, photos.Answerer(predict, detector, spec)):
        pass
    return len(paths) / (time.perf_counter() - started)


def timed_network(predict, crops) -> float:
    started = time.perf_counter()
    for start in range(0, len(crops), 32):
        predict(crops[start : start + 32])
    return len(crops) / (time.perf_counter() - started)


def compare(old: str, new: str, paths: Sequence[str], rounds: int, command: str) -> dict:
    """The two releases' photos/s and network faces/s over `rounds` alternating rounds on `paths`;
    refuses (ValueError) releases that cut faces differently."""
    releases = {"old": photos.load_predictor(old), "new": photos.load_predictor(new)}
    if releases["old"].face_crop != releases["new"].face_crop:
        raise ValueError("the two releases cut faces differently; their photo paths are not comparable.")
    spec = releases["old"].face_crop
    detector = photos.photo_detector(spec)
    crops = [c for p in paths[:64] for c in photos.locate_faces(p, detector, spec).crops]
    for predict in releases.values():
        predict(crops[:2])  # trace before timing
    rates = {name: {"photos_per_second": [], "faces_per_second_network": []} for name in releases}
    for _ in range(rounds):
        for name, predict in releases.items():
            rates[name]["photos_per_second"].append(timed_photos(paths, predict, detector, spec))
            rates[name]["faces_per_second_network"].append(timed_network(predict, crops))
    return {"photos": len(paths), "rounds": rounds, "old": old, "new": new, "cpu_count": os.cpu_count(),
            "rates": rates,
            "new_over_old_photos": sum(rates["new"]["photos_per_second"]) / sum(rates["old"]["photos_per_second"]),
            "new_over_old_network": sum(rates["new"]["faces_per_second_network"])
            / sum(rates["old"]["faces_per_second_network"]),
            "command": command}


def summary(report: dict) -> str:
    lines = [f"{name}: {max(rate['photos_per_second']):.2f} photos/s (best round), network "
             f"{max(rate['faces_per_second_network']):.1f} faces/s" for name, rate in report["rates"].items()]
    lines.append(f"new / old: photos {report['new_over_old_photos']:.2f}x, network {report['new_over_old_network']:.2f}x")
    return "\n".join(lines)
