"""What `alage build-tfrecords` does once its flags are parsed (its usage and flags:
`build_tfrecords_flags`)."""

import dataclasses
import os

from absl import app

from keras_alage import cli
from keras_alage.cli import build_tfrecords_flags
from keras_alage.models import release
from alage_pipelines import build, faces, protocols, runners, sources
from alage_pipelines.age_classes import get_age_classes

FLAGS = build_tfrecords_flags.FLAGS


def crop_spec() -> faces.CropSpec:
    """--crop_from_model's recorded crop, else --crop_size / --crop_margin."""
    if not FLAGS.crop_from_model:
        return faces.CropSpec(FLAGS.crop_size, FLAGS.crop_margin, detector=FLAGS.detector)
    try:
        crop = release.open_model_path(FLAGS.crop_from_model).face_crop
    except (FileNotFoundError, ValueError) as error:
        raise app.UsageError(f"--crop_from_model={FLAGS.crop_from_model}: {error}")
    if crop is None:
        raise app.UsageError(f"--crop_from_model={FLAGS.crop_from_model}: no face crop is recorded with that model.")
    return crop


def say(line: str) -> None:
    """A progress line, on the build's own output."""
    print(line, flush=True)


def main(argv):
    cli.no_arguments(argv)
    source = sources.get_source(FLAGS.dataset)
    try:  # before anything is read or written: an --overwrite would delete the photos
        build.check_not_an_input(os.path.abspath(FLAGS.output_dir), given=[
            ("--data_dir", FLAGS.data_dir), ("--image_root", FLAGS.image_root)])
    except FileExistsError as error:
        raise app.UsageError(str(error))
    try:
        result = sources.read_source(
            FLAGS.dataset, FLAGS.data_dir, FLAGS.image_root, FLAGS.morph_races, FLAGS.min_face_score, FLAGS.age_classes
        )
    except ValueError as error:  # a data set that contradicts itself
        raise app.UsageError(f"--data_dir={FLAGS.data_dir}: {error}")
    records = result.records
    if FLAGS.limit:
        records = protocols.sample(records, min(FLAGS.limit, len(records)), FLAGS.seed)
    say(f"read: {result.summary()}" + (f"; {len(records)} drawn by --limit" if FLAGS.limit else ""))
    split = sources.make_split(
        records, FLAGS.protocol or source.protocol, FLAGS.folds, FLAGS.test_fraction, FLAGS.seed, FLAGS.lap_test_split
    )
    output = os.path.abspath(FLAGS.output_dir)
    detect = source.detect if FLAGS.detect is None else FLAGS.detect
    crop = crop_spec()  # the manifest records the confidence the crop's detector used, never None
    if detect and crop.detector not in faces.BUILD_DETECTORS:
        raise app.UsageError(f"--detector={crop.detector}: a build detects with one of {', '.join(faces.BUILD_DETECTORS)} "
                             "(BlazeFace runs in prediction's face path only).")
    config = build.BuildConfig(
        output_dir=output,
        num_classes=len(get_age_classes(FLAGS.age_classes or source.age_classes).values),
        crop=crop,
        policy=faces.FacePolicy(detect, FLAGS.no_face, faces.DETECTORS[crop.detector][1] if FLAGS.min_confidence is None
                                else FLAGS.min_confidence, FLAGS.full_search),
        records_per_shard=FLAGS.records_per_shard,
        overwrite=FLAGS.overwrite,
        cache_dir=(FLAGS.cache_dir or os.path.join(os.path.dirname(output), "detection-cache")) if detect else None,
        workers=FLAGS.workers,
        beam_args=tuple(FLAGS.beam_arg),
        detector=faces.DlibDetector(upsample=FLAGS.dlib_upsample) if detect and crop.detector == "dlib" else None,
    )
    if FLAGS.dask_scheduler and FLAGS.runner != "dask":
        raise app.UsageError("--dask_scheduler is for --runner=dask.")
    try:
        with runners.beam_args(FLAGS.runner, FLAGS.workers, FLAGS.dask_scheduler) as runner_args:
            config = dataclasses.replace(config, beam_args=tuple(runner_args) + config.beam_args)
            manifest = build.build_tfrecords(split, records, config, FLAGS.dataset, result.dropped, say, FLAGS.verbose)
    except (FileExistsError, ValueError) as error:
        raise app.UsageError(str(error))
    print(build.describe(manifest, output))
