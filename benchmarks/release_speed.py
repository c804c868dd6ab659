"""Photos/s of two releases on the same photos, measured alternately in one run (this machine is
noisy, so only the ratio and same-run figures mean something).

  python benchmarks/release_speed.py --old=models/al_dlib_faceapi_v4 --new=models/al_dlib_faceapi_faceres_v5 \
      --output=docs/results/serving/release_speed_v5.json

Both go through predict.py's default path (`photos.predict_photos` with the release's detector and
MTCNN where it finds none, faces batched 32 at a time); the network alone is timed on the same
faces' crops. Writes OUTPUT.json (default docs/results/serving/release_speed.json).
"""

import json
import os
import sys
import time

from absl import app, flags

from keras_alage import cli
from keras_alage.serving import photos
from alage_pipelines import files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("old", "models/al_dlib_faceapi_v4", "The release to compare against.")
flags.DEFINE_string("new", "models/al_dlib_faceapi_faceres_v5", "The new release.")
flags.DEFINE_string("photos", os.path.join(REPO, "..", "shared", "data", "fgnet", "images", "*.JPG"), "Glob of photos.")
flags.DEFINE_integer("limit", 120, "Photos per round.")
flags.DEFINE_integer("rounds", 2, "Alternating rounds per release.")
flags.DEFINE_string("output", os.path.join(REPO, "docs", "results", "serving", "release_speed.json"), "JSON output.")
FLAGS = flags.FLAGS


def timed_photos(paths, predict, detector, spec) -> float:
    started = time.perf_counter()
    for _ in photos.predict_photos(paths, predict, detector, spec, predict.input_size):
        pass
    return len(paths) / (time.perf_counter() - started)


def timed_network(predict, crops) -> float:
    started = time.perf_counter()
    for start in range(0, len(crops), 32):
        predict(crops[start : start + 32])
    return len(crops) / (time.perf_counter() - started)


def main(argv):
    cli.no_arguments(argv)
    paths = cli.matching_files(FLAGS.photos, "photos", FLAGS.limit)
    releases = {"old": photos.load_predictor(FLAGS.old), "new": photos.load_predictor(FLAGS.new)}
    if releases["old"].face_crop != releases["new"].face_crop:
        raise app.UsageError("the two releases cut faces differently; their photo paths are not comparable.")
    spec = releases["old"].face_crop
    detector = photos.photo_detector(spec)
    crops = [c for p in paths[:64] for c in photos.locate_faces(p, detector, spec).crops]
    for predict in releases.values():
        predict(crops[:2])  # trace before timing
    rates = {name: {"photos_per_second": [], "faces_per_second_network": []} for name in releases}
    for _ in range(FLAGS.rounds):
        for name, predict in releases.items():
            rates[name]["photos_per_second"].append(timed_photos(paths, predict, detector, spec))
            rates[name]["faces_per_second_network"].append(timed_network(predict, crops))
    report = {"photos": len(paths), "rounds": FLAGS.rounds, "old": FLAGS.old, "new": FLAGS.new,
              "cpu_count": os.cpu_count(), "rates": rates,
              "new_over_old_photos": sum(rates["new"]["photos_per_second"]) / sum(rates["old"]["photos_per_second"]),
              "new_over_old_network": sum(rates["new"]["faces_per_second_network"])
              / sum(rates["old"]["faces_per_second_network"]),
              "command": " ".join(["python benchmarks/release_speed.py"] + sys.argv[1:])}
    files.write_atomically(FLAGS.output, json.dumps(report, indent=1) + "\n")
    for name, rate in rates.items():
        print(f"{name}: {max(rate['photos_per_second']):.2f} photos/s (best round), network "
              f"{max(rate['faces_per_second_network']):.1f} faces/s")
    print(f"new / old: photos {report['new_over_old_photos']:.2f}x, network {report['new_over_old_network']:.2f}x")


if __name__ == "__main__":
    cli.run(main)
