"""benchmarks/photo_path.py's measuring: today's face path beside the new one, and photos/s per
face detector (see the main's docstring)."""

import dataclasses
import glob
import json
import os
import tempfile
import time

import numpy as np

from keras_alage.serving import photos, precision, threads, video
from keras_alage.studies import benchmarking
from keras_alage.studies.benchmarks import face_path
from alage_pipelines import faces, files, images


def make_detector(name: str):
    if name == "dlib+mtcnn":  # predict.py's default: MTCNN where dlib finds no face
        return faces.FallbackDetector(faces.DlibDetector(), faces.MtcnnDetector())
    if name == "dlib-adaptive":
        return faces.DlibDetector(upsample=None)
    if name.startswith("dlib-"):
        return faces.DlibDetector(upsample=int(name.split("-")[1]))
    return faces.make_detector(name)


def chip_margins(names, chips_glob: str, chip_count: int) -> dict:
    """Each detector family's box on the same ready-made chips (`faces.matching_margin`)."""

    paths = sorted(glob.glob(chips_glob))[:chip_count]
    if not paths:
        raise FileNotFoundError(f"--chips={chips_glob} matches no file; the detectors' boxes cannot be compared.")
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


def batched(paths, predict, detector, spec, batch_faces: int = 32) -> dict:
    started = time.perf_counter()
    ages = {}
    for result in photos.answer_photos(paths, photos.Answerer(predict, detector, spec, batch_faces=batch_faces)):
        best = max(result.faces, key=lambda f: f.confidence) if result.faces else None
        ages[result.path] = best.age if best else None
    return {"seconds": time.perf_counter() - started, "ages": ages}


def true_ages(paths) -> dict:
    return {p: age for p, (_, age) in face_path.fgnet_labels(paths).items()}


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


def paths_markdown(report: dict) -> str:
    lines = [f"## Today's face path and the new one: {report['model']}", "",
             "| workload | setting | rate | ratio to today | answered | median age change (years) |",
             "|---|---|---|---|---|---|"]
    for name, rows in report["workloads"].items():
        for row in rows:
            change = "-" if row["age_difference_median"] is None else f"{row['age_difference_median']:.2f}"
            lines.append(f"| {name} ({row['photos']}) | {row['setting']} | {row['photos_per_second']:.2f} photos/s | "
                         f"{row['ratio']:.2f}x | {row['answered']} | {change} |")
    for row in report.get("video", []):
        lines.append(f"| video 640x480 ({row['frames']} frames) | {row['setting']} | {row['frames_per_second']:.1f} "
                     f"frames/s | {row['ratio']:.2f}x | | |")
    lines += ["", "Each rate is the best of the rounds, the settings alternating in one process; read the ratios."]
    if "threads" in report:
        lines.append(f"TensorFlow's threads: {report['threads']['intra_op']} per op, {report['threads']['inter_op']} "
                     "ops at once (0: one per core).")
    lines += ["", f"Command: `{report['command']}`", ""]
    return "\n".join(lines)


def path_settings(precisions=("float32",)) -> list:
    """Today's path and the new one with v5's ten crops (float32), then the default under each of
    `precisions`, side by side."""
    return [benchmarking.TODAY, benchmarking.NEW_TEN,
            *(dataclasses.replace(benchmarking.NEW, precision=name) for name in precisions)]


def compare_paths(paths, model_path: str, output: str, command: str, big_photos: int = 20, big_size=(4000, 3000),
                  clip_frames: int = 150, rounds: int = 2, batch_faces: int = 32, precisions=("float32",)) -> dict:
    """Today's face path beside the new ones (`benchmarking.face_path_rates`), the new ones under
    each of `precisions` (`serving.precision`, alternating in this process), on `paths`, on
    `big_photos` camera-size JPEGs made from them and on a 640x480 clip panning over them; writes
    `output`_paths.json and .md. A precision this CPU lacks is refused before anything runs."""
    for name in precisions:
        precision.check(name)
    width, height = big_size
    with tempfile.TemporaryDirectory() as folder:
        workloads = {"FG-NET photos": paths}
        if big_photos:
            workloads[f"{width}x{height} JPEGs"] = benchmarking.big_photos(paths[:big_photos], folder, (width, height))
        clip = benchmarking.panning_clip(paths, os.path.join(folder, "clip.mp4"), clip_frames) if clip_frames else None
        report = benchmarking.face_path_rates(model_path, workloads, clip, path_settings(precisions), rounds=rounds,
                                              batch_faces=batch_faces, log=lambda text: print(text, flush=True))
    report["command"] = command
    report["threads"] = dict(zip(("intra_op", "inter_op"), threads.current()))  # 0: one per core
    files.write_atomically(output + "_paths.json", json.dumps(report, indent=1))
    files.write_atomically(output + "_paths.md", paths_markdown(report))
    print(paths_markdown(report))
    return report


def compare_detectors(paths, model_path: str, output: str, command: str, detectors, chips_glob: str,
                      chip_count: int = 100, batch_faces: int = 32, video_frames: int = 60) -> dict:
    """Photos/s per detector, one at a time (timed per stage) and batched, the MAE behind each, and
    video frames/s with the last; writes `output`.json and .md."""
    predict = photos.load_predictor(model_path)
    recorded = predict.face_crop or faces.CropSpec()  # as recorded: each detector cuts it through its box
    margins = chip_margins(detectors, chips_glob, chip_count)
    truth = true_ages(paths)
    report = {"model": files.portable_path(model_path), "photos": len(paths), "model_crop": recorded.to_json(),
              "chip_margins": margins, "detectors": {},
              "command": command}
    predict([faces.encode_jpeg(np.zeros((64, 64, 3), np.uint8))])  # trace the serving graph before timing
    for name in detectors:
        detector = make_detector(name)
        spec = faces.translate_crop(recorded, detector.name, margins)
        print(f"{name}: crop margin {spec.margin:.3f} of its box", flush=True)
        single = one_at_a_time(paths, predict, detector, spec)
        fast = batched(paths, predict, detector, spec, batch_faces)
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
    if video_frames:
        name = detectors[-1]
        detector = make_detector(name)
        spec = faces.translate_crop(recorded, detector.name, margins)
        with tempfile.TemporaryDirectory() as folder:
            clip = benchmarking.panning_clip(paths[:max(1, video_frames // 12 + 1)], os.path.join(folder, "clip.mp4"),
                                             video_frames, (320, 240), 12, zoom_step=0.02)
            result = video.answer_video(clip, photos.Answerer(predict, detector, spec))
        report["video"] = {"detector": name, "frames": result.frames, "frames_per_second": result.frames_per_second,
                           "tracks": len(result.tracks)}
    files.write_atomically(output + ".json", json.dumps(report, indent=1))
    files.write_atomically(output + ".md", markdown(report))
    print(markdown(report))
    return report
