"""What `alage measure-faceapi-cut` does once its flags are parsed (its usage and flags:
`measure_faceapi_cut_flags`)."""

import random
import sys

from absl import app

from keras_alage import cli
from keras_alage.cli import measure_faceapi_cut_flags
from keras_alage.models import faceapi_runtime, release
from keras_alage.studies import faceapi_cut
from alage_pipelines import faces, sources

FLAGS = measure_faceapi_cut_flags.FLAGS


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
