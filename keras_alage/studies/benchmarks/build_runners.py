"""The TFRecord build on Beam's DaskRunner against the DirectRunner (`benchmarks/build_runners.py`):
records/s on the same photos, in one run, with detection (no cache) in the workers. Both builds
must come out byte for byte the same (shards and record log); the point is what the engine costs,
since detection dominates.
"""

import glob
import os
import tempfile
import time
from typing import Callable

from alage_pipelines import build, faces, protocols, runners
from alage_pipelines.readers import fgnet


def same_files(first: str, second: str) -> bool:
    """Whether two build folders hold the same bytes in every file but the manifest."""
    for name in sorted(os.listdir(first)):
        if name == "manifest.json":
            continue
        with open(os.path.join(first, name), "rb") as a, open(os.path.join(second, name), "rb") as b:
            if a.read() != b.read():
                return False
    return True


def compare(fgnet_dir: str, limit: int, workers: int, detector: str, say: Callable[[str], None] = print) -> None:
    """Builds `limit` FG-NET photos with each runner (`workers` processes each, `detector` in the
    workers) and says each one's records/s, then their ratio and whether the outputs are the same."""
    if not os.path.isdir(os.path.join(fgnet_dir, "images")):
        raise ValueError(f"--fgnet_dir={fgnet_dir} has no images/ folder.")
    records = protocols.sample(fgnet.read_fgnet(fgnet_dir).records, limit, 0)
    split = protocols.subject_kfold(records, 2, seed=0)
    crop = faces.CropSpec(256, 0.6 if detector == "dlib" else 0.4, detector=detector)
    rates, folders = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for runner in ("direct", "dask"):
            started = time.perf_counter()  # the local cluster's start-up counts against the Dask runner
            with runners.beam_args(runner, workers) as args:
                config = build.BuildConfig(os.path.join(scratch, runner), 70, crop, faces.FacePolicy(no_face="center"),
                                           records_per_shard=100, workers=workers, beam_args=tuple(args))
                manifest = build.build_tfrecords(split, records, config, "fgnet")
            seconds = time.perf_counter() - started
            rates[runner] = manifest["records"] / seconds
            folders[runner] = config.output_dir
            say(f"{runner}: {manifest['records']} records in {seconds:.1f} s = {rates[runner]:.2f} records/s")
        same = same_files(folders["direct"], folders["dask"])
        shards = len(glob.glob(os.path.join(folders["dask"], "*.tfrecord")))
    say(f"Dask / Direct records/s with {workers} workers each ({detector} detection, {len(records)} photos, "
        f"{shards} shards): {rates['dask'] / rates['direct']:.2f}; outputs byte for byte the same: {same}")
