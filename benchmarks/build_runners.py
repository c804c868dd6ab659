"""The TFRecord build on Beam's DaskRunner against the DirectRunner: records/s on the same photos,
in one run, with detection (no cache) in the workers.

  python benchmarks/build_runners.py                    # 300 FG-NET photos, dlib detector, 2 workers
  python benchmarks/build_runners.py --detector=mtcnn --limit=100

Both builds must come out byte for byte the same (shards and record log); the point is what the
engine costs, since detection dominates.
"""

import glob
import os
import tempfile
import time

from absl import app, flags

from keras_alage import cli
from alage_pipelines import build, faces, protocols, runners
from alage_pipelines.readers import fgnet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("fgnet_dir", os.path.join(REPO, "..", "shared", "data", "fgnet"), "FG-NET as distributed.")
flags.DEFINE_integer("limit", 300, "Photos to build.")
flags.DEFINE_integer("workers", 2, "Worker processes of each runner.")
flags.DEFINE_enum("detector", "dlib", list(faces.DETECTOR_NAMES), "Face detector run in the workers.")
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)

    if not os.path.isdir(os.path.join(FLAGS.fgnet_dir, "images")):
        raise app.UsageError(f"--fgnet_dir={FLAGS.fgnet_dir} has no images/ folder.")
    records = protocols.sample(fgnet.read_fgnet(FLAGS.fgnet_dir).records, FLAGS.limit, 0)
    split = protocols.subject_kfold(records, 2, seed=0)
    crop = faces.CropSpec(256, 0.6 if FLAGS.detector == "dlib" else 0.4, detector=FLAGS.detector)
    rates, folders = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for runner in ("direct", "dask"):
            started = time.perf_counter()  # the local cluster's start-up counts against the Dask runner
            with runners.beam_args(runner, FLAGS.workers) as args:
                config = build.BuildConfig(os.path.join(scratch, runner), 70, crop, faces.FacePolicy(no_face="center"),
                                           records_per_shard=100, workers=FLAGS.workers, beam_args=tuple(args))
                manifest = build.build_tfrecords(split, records, config, "fgnet")
            seconds = time.perf_counter() - started
            rates[runner] = manifest["records"] / seconds
            folders[runner] = config.output_dir
            print(f"{runner}: {manifest['records']} records in {seconds:.1f} s = {rates[runner]:.2f} records/s",
                  flush=True)
        same = all(
            open(os.path.join(folders["direct"], name), "rb").read() == open(os.path.join(folders["dask"], name), "rb").read()
            for name in sorted(os.listdir(folders["direct"])) if name != "manifest.json"
        )
        shards = len(glob.glob(os.path.join(folders["dask"], "*.tfrecord")))
    print(f"Dask / Direct records/s with {FLAGS.workers} workers each ({FLAGS.detector} detection, {len(records)} photos, "
          f"{shards} shards): {rates['dask'] / rates['direct']:.2f}; outputs byte for byte the same: {same}")


if __name__ == "__main__":
    cli.run(main)
