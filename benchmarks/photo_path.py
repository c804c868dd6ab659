"""Photo to age, end to end: today's face path beside the new one, and photos/s per face detector.

  python benchmarks/photo_path.py                         # today's path and the new, in one run
  python benchmarks/photo_path.py --mode=detectors --limit=100 --detectors=dlib

--mode=paths (the default): the released model's answer through the path before issue 36 (dlib's HOG
on the full decode, v5's ten shift_flip views for the AL member), the new path with those ten views,
and the default (BlazeFace on a DCT-reduced decode, crops at the resolution they need, the release's
recorded crops), alternating in one process (`benchmarking.face_path_rates`, `path_settings`):
photos/s on FG-NET photos, on camera-size JPEGs made from them (--big_size, default 4000x3000), and
frames/s on a 640x480 clip panning over them; ratios to the path before, and how far each photo's
answer moved. Writes OUTPUT_paths.json and OUTPUT_paths.md. --precisions=float32,bfloat16 answers the
default path in both precisions (`serving.precision`: the networks' arithmetic, read at each call, so
the settings still alternate in one process); --intra_op_threads / --inter_op_threads are the
process's TensorFlow threads, as `alage predict` sets them (`serving.threads`).

--mode=detectors, the comparison of detectors:

For each detector (MTCNN, dlib's HOG with 5-point alignment at 0 and 1 upsampling), all in one
run on the same photos with the released model:
  - one photo at a time (`photos.answer_photo`, the path before batching), timed per stage:
    decoding, detection (with the rotation search where no face is upright), cutting and JPEG
    encoding, the network; the faces found and, where the file names carry ages (FG-NET), the
    MAE of the released model behind that detector;
  - the batched path (`photos.answer_photos`: detection of the next photos overlapping the
    network, faces answered 32 at a time), timed whole, and checked to answer the same ages.
Each detector cuts with the crop that matches the model's (`faces.translate_crop`, the
detectors' boxes measured on the same UTKFace chips), so the comparison is of detectors, not of
crops. Then video: a clip panned and zoomed over photos, through `video.answer_video`.
Writes OUTPUT.json and OUTPUT.md (default docs/results/serving/photo_path).
"""

import os
import sys

from absl import app, flags

from keras_alage import cli
from keras_alage.models import release
from keras_alage.serving import precision, threads
from keras_alage.serving.options import PRECISIONS
from keras_alage.studies.benchmarks import photo_path

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
flags.DEFINE_enum("mode", "paths", ["paths", "detectors"], "paths: today's face path beside the new one; detectors: "
                  "photos/s and MAE per detector.")
flags.DEFINE_integer("big_photos", 20, "Camera-size JPEGs made from the first photos (--mode=paths; 0: none).")
flags.DEFINE_list("big_size", ["4000", "3000"], "Width and height of those JPEGs.")
flags.DEFINE_integer("clip_frames", 150, "Frames of the 640x480 clip (--mode=paths; 0: no video).")
flags.DEFINE_integer("rounds", 2, "Rounds of the settings alternating (--mode=paths; the best kept).")
flags.DEFINE_list("precisions", ["float32"], f"The networks' arithmetic the default path is answered in, of "
                  f"{', '.join(PRECISIONS)} (--mode=paths; the other paths stay float32).")
flags.register_validator("precisions", lambda names: bool(names) and set(names) <= set(PRECISIONS),
                         message=f"--precisions takes one or more of {', '.join(PRECISIONS)}")
cli.define_thread_flags(__name__)  # as `alage predict` sets them, for every setting (process-wide)
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    threads.set_threads(FLAGS.intra_op_threads, FLAGS.inter_op_threads)  # before TensorFlow's first op
    paths = cli.matching_files(FLAGS.photos, "photos", FLAGS.limit)
    model_path = FLAGS.model or release.default_path()
    command = " ".join(["python benchmarks/photo_path.py"] + sys.argv[1:])
    if FLAGS.mode == "paths":
        try:
            size = tuple(int(v) for v in FLAGS.big_size)
        except ValueError:
            size = ()
        if len(size) != 2 or min(size) < 64:
            raise app.UsageError(f"--big_size={','.join(FLAGS.big_size)}: give a width and a height in pixels.")
        try:
            photo_path.compare_paths(paths, model_path, FLAGS.output, command, FLAGS.big_photos, size,
                                     FLAGS.clip_frames, FLAGS.rounds, FLAGS.batch_faces, FLAGS.precisions)
        except precision.NoNativeBfloat16 as error:
            raise app.UsageError(f"--precisions: {error}")
        return
    try:
        photo_path.compare_detectors(paths, model_path, FLAGS.output, command, FLAGS.detectors, FLAGS.chips,
                                     FLAGS.chip_count, FLAGS.batch_faces, FLAGS.video_frames)
    except FileNotFoundError as error:
        raise app.UsageError(str(error))


if __name__ == "__main__":
    cli.run(main)
