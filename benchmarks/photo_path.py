"""Photo to age, end to end: photos/s per face detector, where the time goes, and video frames/s.

  python benchmarks/photo_path.py                         # FG-NET photos beside the repository
  python benchmarks/photo_path.py --limit=100 --detectors=dlib

For each detector (MTCNN, dlib's HOG with 5-point alignment at 0 and 1 upsampling), all in one
run on the same photos with the released model:
  - one photo at a time (`photos.predict_photo`, the path before batching), timed per stage:
    decoding, detection (with the rotation search where no face is upright), cutting and JPEG
    encoding, the network; the faces found and, where the file names carry ages (FG-NET), the
    MAE of the released model behind that detector;
  - the batched path (`photos.predict_photos`: detection of the next photos overlapping the
    network, faces answered 32 at a time), timed whole, and checked to answer the same ages.
Each detector cuts with the crop that matches the model's (`faces.translate_crop`, the
detectors' boxes measured on the same UTKFace chips), so the comparison is of detectors, not of
crops. Then video: a clip panned and zoomed over photos, through `video.predict_video`.
Writes OUTPUT.json and OUTPUT.md (default docs/results/serving/photo_path).
"""

import glob
import json
import os
import re
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

from keras_alage import cli
from keras_alage.models import release
from keras_alage.serving import photos, video
from alage_pipelines import faces, files, images

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared", "data")
flags.DEFINE_string("model", None, "Model (default: the released model in models/).")
flags.DEFINE_string("photos", os.path.join(SHARED, "fgnet", "images", "*.JPG"), "Glob of the photos (quote it).")
flags.DEFINE_string("chips", os.path.join(SHARED, "utkface", "crop_part1", "*.jpg"),
                    "Glob of ready-made face chips on which each detector's box is measured.")
flags.DEFINE_integer("chip_count", 100, "Chips to measure the boxes on.")
flags.DEFINE_integer("limit", None, "Use the first N photos.")
flags.DEFINE_list("detectors", ["mtcnn", "dlib-0", "dlib-1", "dlib-adaptive", "dlib+mtcnn"],
                  "mtcnn; dlib-0 / dlib-1: HOG on the photo upsampled 0 / 1 times; dlib-adaptive: 0, then 1 where 0 "
                  "finds none; dlib+mtcnn: dlib-0, and MTCNN where it finds none (predict.py's default).")
flags.DEFINE_integer("batch_faces", 32, "Faces per network call in the batched path.")
flags.DEFINE_integer("video_frames", 60, "Frames of the benchmark clip (0: no video).")
flags.DEFINE_string("output", os.path.join(REPO, "docs", "results", "serving", "photo_path"), "Output path without extension.")
FLAGS = flags.FLAGS
FGNET_AGE = re.compile(r"^\d+A(\d+)", re.IGNORECASE)


def make_detector(name: str):
    if name == "dlib+mtcnn":  # predict.py's default: MTCNN where dlib finds no face
        return faces.FallbackDetector(faces.DlibDetector(), faces.MtcnnDetector())
    if name == "dlib-adaptive":
        return faces.DlibDetector(upsample=None)
    if name.startswith("dlib-"):
        return faces.DlibDetector(upsample=int(name.split("-")[1]))
    return faces.make_detector(name)


def chip_margins(names) -> dict:
    """Each detector family's box on the same ready-made chips (`faces.matching_margin`)."""

    paths = sorted(glob.glob(FLAGS.chips))[: FLAGS.chip_count]
    if not paths:
        raise app.UsageError(f"--chips={FLAGS.chips} matches no file; the detectors' boxes cannot be compared.")
    chips = [images.read_image(p) for p in paths]
    margins = {}
    for family in sorted({n.split("-")[0].split("+")[0] for n in names}):
        estimate = faces.matching_margin(chips, make_detector("dlib-1" if family == "dlib" else family), 0.0)
        margins[family] = estimate.margin
        print(f"{family}: box = {estimate.face_fraction:.3f} of a chip ({estimate.measured} measured)", flush=True)
    return margins


def one_at_a_time(paths, predict, detector, spec) -> dict:
    """The unbatched path, stage by stage: seconds per stage and each photo's answer."""

    seconds = dict.fromkeys(("decode", "detect", "crop", "network"), 0.0)
    ages = {}
    for path in paths:
        started = time.perf_counter()
        try:
            _, photo = images.read_photo(path)
        except images.ImageError:
            ages[path] = None
            continue
        decoded = time.perf_counter()
        found = photos.find_faces(photo, detector)
        detected = time.perf_counter()
        crops = [faces.encode_jpeg(faces.crop_face(photo, face, spec)) for face in found]
        cut = time.perf_counter()
        if crops:
            outputs = {k: np.asarray(v) for k, v in predict(crops).items()}
            best = int(np.argmax([f.confidence for f in found]))
            ages[path] = float(outputs["age"][best])
        else:
            ages[path] = None
        done = time.perf_counter()
        for stage, (a, b) in zip(seconds, ((started, decoded), (decoded, detected), (detected, cut), (cut, done))):
            seconds[stage] += b - a
    return {"seconds": seconds, "ages": ages}


def batched(paths, predict, detector, spec) -> dict:
    started = time.perf_counter()
    ages = {}
    for result in photos.predict_photos(paths, predict, detector, spec, predict.input_size,
                                        batch_faces=FLAGS.batch_faces):
        best = max(result.faces, key=lambda f: f.confidence) if result.faces else None
        ages[result.path] = best.age if best else None
    return {"seconds": time.perf_counter() - started, "ages": ages}


def true_ages(paths) -> dict:
    found = {p: FGNET_AGE.match(os.path.basename(p)) for p in paths}
    return {p: float(m.group(1)) for p, m in found.items() if m}


def benchmark_clip(paths, frames: int, folder: str) -> str:
    """A 320x240 clip panning and zooming over a few photos, 12 frames each."""
    import cv2

    path = os.path.join(folder, "clip.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (320, 240))
    for i in range(frames):
        photo = images.read_image(paths[(i // 12) % len(paths)])
        height, width = photo.shape[:2]
        zoom = 1.0 - 0.02 * (i % 12)
        w, h = max(8, int(width * zoom)), max(6, int(min(height, width * 0.75) * zoom))
        x, y = int((width - w) * (i % 12) / 11), max(0, (height - h) // 2)
        writer.write(cv2.cvtColor(cv2.resize(photo[y:y + h, x:x + w], (320, 240)), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def mae(ages: dict, truth: dict):
    errors = [abs(a - truth[p]) for p, a in ages.items() if a is not None and p in truth]
    return float(np.mean(errors)) if errors else None


def markdown(report: dict) -> str:
    lines = [f"## Photo to age: {report['photos']} photos, {report['model']}", "",
             "| detector | margin | photos/s one at a time | photos/s batched | speed-up | answered | MAE | "
             "decode | detect | crop | network |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in report["detectors"].items():
        shares = row["stage_shares"]
        error = "-" if row["mae"] is None else f"{row['mae']:.2f}"
        lines.append(
            f"| {name} | {row['margin']:.3f} | {row['photos_per_second_one_at_a_time']:.2f} | "
            f"{row['photos_per_second_batched']:.2f} | {row['batched_speedup']:.2f}x | {row['answered']} | {error} | "
            + " | ".join(f"{100 * shares[stage]:.0f}%" for stage in ("decode", "detect", "crop", "network")) + " |")
    lines += ["", "Stage shares are of the one-at-a-time path; the batched path overlaps detection with the "
              "network and answers up to 32 faces per call. Ratios are measured in this one run."]
    if report.get("video"):
        video = report["video"]
        lines += ["", f"Video ({video['detector']}): {video['frames']} frames of 320x240, {video['frames_per_second']:.1f} "
                  f"frames/s, {video['tracks']} track(s)."]
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def main(argv):
    cli.no_arguments(argv)

    paths = cli.matching_files(FLAGS.photos, "photos", FLAGS.limit)
    model_path = FLAGS.model or release.default_path()
    predict = photos.load_predictor(model_path)
    recorded = photos.face_crop_for(predict)
    margins = chip_margins(FLAGS.detectors)
    truth = true_ages(paths)
    report = {"model": os.path.relpath(model_path, REPO), "photos": len(paths), "model_crop": recorded.to_json(),
              "chip_margins": margins, "detectors": {},
              "command": " ".join(["python benchmarks/photo_path.py"] + sys.argv[1:])}
    predict([faces.encode_jpeg(np.zeros((64, 64, 3), np.uint8))])  # trace the serving graph before timing
    for name in FLAGS.detectors:
        detector = make_detector(name)
        spec = faces.translate_crop(recorded, detector.name, margins)
        print(f"{name}: crop margin {spec.margin:.3f} of its box", flush=True)
        single = one_at_a_time(paths, predict, detector, spec)
        fast = batched(paths, predict, detector, spec)
        same = [abs(single["ages"][p] - fast["ages"][p]) for p in paths
                if single["ages"].get(p) is not None and fast["ages"].get(p) is not None]
        total = sum(single["seconds"].values())
        report["detectors"][name] = {
            "margin": spec.margin,
            "photos_per_second_one_at_a_time": len(paths) / total,
            "photos_per_second_batched": len(paths) / fast["seconds"],
            "batched_speedup": total / fast["seconds"],
            "stage_seconds": single["seconds"],
            "stage_shares": {k: v / total for k, v in single["seconds"].items()},
            "answered": sum(a is not None for a in single["ages"].values()),
            "mae": mae(single["ages"], truth),
            "batched_largest_age_difference": max(same, default=0.0),
        }
        print(json.dumps({name: report["detectors"][name]}, indent=1), flush=True)
    if FLAGS.video_frames:
        name = FLAGS.detectors[-1]
        detector = make_detector(name)
        spec = faces.translate_crop(recorded, detector.name, margins)
        with tempfile.TemporaryDirectory() as folder:
            clip = benchmark_clip(paths[:max(1, FLAGS.video_frames // 12 + 1)], FLAGS.video_frames, folder)
            result = video.predict_video(clip, predict, detector, spec)
        report["video"] = {"detector": name, "frames": result.frames, "frames_per_second": result.frames_per_second,
                           "tracks": len(result.tracks)}
    files.write_atomically(FLAGS.output + ".json", json.dumps(report, indent=1))
    files.write_atomically(FLAGS.output + ".md", markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    cli.run(main)
