"""Measures where face-api's own face cut lies inside the release's face crop.

  python scripts/measure_faceapi_cut.py --dataset=fgnet --data_dir=../shared/data/fgnet \
      --output=docs/results/releases/faceapi_cut.json

Each photo's face is cut as the release cuts it (`--model`'s recorded crop); face-api's own
pipeline (its detector and 68 landmarks, run by Node from tools/face-api) then finds its
`alignedRect` inside that crop. The median rectangle is the cut the release gives face-api's
network (`studies.faceapi_cut`); no age label chooses it.
"""

import random
import sys

from absl import app, flags

from keras_alage import cli
from keras_alage.models import faceapi_runtime, release
from keras_alage.studies import faceapi_cut
from alage_pipelines import faces, sources

flags.DEFINE_enum("dataset", "fgnet", sorted(sources.SOURCES), "Data set whose photos are measured.")
flags.DEFINE_string("data_dir", None, "The data set's folder, as --dataset's reader takes it.")
flags.DEFINE_string("model", None, "Released model whose face crop is used (default: the default release).")
flags.DEFINE_integer("limit", 300, "Photos to measure, drawn with --seed.")
flags.DEFINE_integer("seed", 0, "Seed of the draw.")
flags.DEFINE_string("output", None, "JSON file for the measurement (written atomically).")
flags.mark_flags_as_required(["data_dir", "output"])
cli.require_positive("limit")
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    reason = faceapi_runtime.unavailable()
    if reason:
        raise app.UsageError(f"face-api's runtime is needed: {reason}.")
    spec = release.open_model_path(FLAGS.model or release.default_path()).face_crop
    if spec is None:
        raise app.UsageError(f"--model={FLAGS.model} records no face crop to measure inside.")
    records = list(sources.read_source(FLAGS.dataset, FLAGS.data_dir).records)
    random.Random(FLAGS.seed).shuffle(records)
    records = records[: FLAGS.limit]
    ages = {r.path: r.age for r in records}
    crops, kept = faceapi_cut.release_crops([r.path for r in records], spec, faces.make_detector(spec.detector))
    measurement = faceapi_cut.measure(crops, [ages[p] for p in kept])
    summary = faceapi_cut.write(measurement, FLAGS.output, " ".join(["python scripts/measure_faceapi_cut.py"] + sys.argv[1:]))
    print(f"{summary['measured']} faces measured ({len(records) - len(kept)} photos without a release crop, "
          f"{summary['without_face']} crops where face-api found no face)")
    print(f"face-api's cut: {summary['cut']}; its age on that fixed cut differs from its own pipeline's by "
          f"{summary['own_vs_fixed_mean_abs_difference']:.2f} years on average")


def run() -> None:
    """The command's entry point (`scripts/measure_faceapi_cut.py`, `alage measure-faceapi-cut`)."""
    cli.run(main)


if __name__ == "__main__":
    run()
