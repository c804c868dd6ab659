"""Predicts the age of every face in photos and videos: detect, crop as in training, answer, report.

  python scripts/predict.py photo.jpg                      # the released model
  python scripts/predict.py --model=serving/age/1 photo.jpg more_photos/ --output=ages.csv --draw=drawn/

--model is an exported SavedModel folder, a .keras model or a released model's folder
(default: the released model in models/, which answers out of the box). Each face is printed with its
age; --output writes CSV or JSON (by extension); --draw writes the photos with face boxes,
ages and attention boxes. A file that cannot be used is reported and skipped.

Videos (.mp4, .avi, .mov, .mkv, .webm, ...) and --camera=N: faces are tracked across frames and
each track's age is smoothed; with --draw the annotated video and a per-track CSV are written.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from keras_alage import cli  # noqa: E402

flags.DEFINE_string("model", None, "SavedModel folder (scripts/export.py), .keras model or released model's "
                    "folder; default: the released model in models/.")
flags.DEFINE_enum("crops", None, ["ten", "center", "center_flip", "shift_flip"], "Crops for a .keras model "
                  "(default ten) or a released model (default: the crops it records); a SavedModel has its own.")
flags.DEFINE_string("output", None, "Write the results to this .csv or .json file.")
flags.DEFINE_string("draw", None, "Write drawn photos into this folder.")
flags.DEFINE_float("min_confidence", None, "Faces scoring below this are not reported upright (default: the "
                   "detector's own: 0.9 for MTCNN's probability, 0.2 for dlib's HOG margin).")
flags.DEFINE_enum("detector", None, ["mtcnn", "dlib"], "Face detector; default: the one the model's recorded crop "
                  "was measured with (MTCNN where none is recorded).")
flags.DEFINE_enum("fallback_detector", "mtcnn", ["mtcnn", "dlib", ""], "Where the detector finds no face, this one "
                  "looks (its box rescaled to the detector's; '' for none).")
flags.DEFINE_enum("no_face", "skip", ["skip", "whole"], "A photo where no face is found: report and skip it, or "
                  "answer it as one face filling its centre square ('whole': for ready-made face chips, such as "
                  "UTKFace's, whose face fills the picture).")
flags.DEFINE_integer("batch_faces", 32, "Faces the network answers in one call (across photos); detection of the "
                     "next photos overlaps it.")
flags.DEFINE_bool("adapt_prior", False, "Photos of one population (a class, a ward...): move the answers to these "
                  "faces' own age prior, estimated from the answers alone (EM; needs the released model's recorded "
                  "prior). Each answer then depends on the other photos; video is answered as is.")
flags.DEFINE_integer("camera", None, "Read this camera (OpenCV index) as a video instead of files.")
flags.DEFINE_integer("max_frames", None, "Stop a video or camera after this many frames.")
flags.DEFINE_integer("crop_size", None, "Face crop side; default: the model's recorded crop, else 256.")
flags.DEFINE_float("crop_margin", None, "Face box enlargement; default: the model's recorded crop (training "
                   "writes face_crop.json, export carries it), else 0.4. Must match the faces it was trained on.")
FLAGS = flags.FLAGS


def run_video(source, predict, detector, spec) -> bool:
    """Tracks and ages in one video (file or camera); prints them; with --draw writes the
    annotated video and its per-track CSV there. False if the video could not be read."""
    from keras_alage import video

    name = f"camera{source}" if isinstance(source, int) else os.path.splitext(os.path.basename(source))[0]
    output = os.path.join(FLAGS.draw, f"{name}.mp4") if FLAGS.draw else None
    try:
        report = video.predict_video(source, predict, detector, spec, output, FLAGS.min_confidence, FLAGS.max_frames)
    except ValueError as error:
        print(f"{source}: skipped ({error})", flush=True)
        return False
    print(f"{source}: {report.frames} frames, {report.frames_per_second:.1f} frames/s, {len(report.tracks)} track(s)")
    for track in report.tracks:
        print(f"  track {track.id}: {track.age:.1f} years over {track.frames} frames "
              f"({track.first_frame}-{track.last_frame})")
    if output:
        video.write_tracks(report, os.path.join(FLAGS.draw, f"{name}.tracks.csv"))
        print(f"  wrote {output} and {name}.tracks.csv")
    return True


def main(argv):
    if len(argv) < 2 and FLAGS.camera is None:
        raise app.UsageError("Give one or more photos, videos or folders to predict (or --camera).")
    import cv2
    import tensorflow as tf

    from keras_alage import photos, release
    from pipelines import images

    FLAGS.model = FLAGS.model or release.default_path()
    try:
        predict = photos.load_predictor(FLAGS.model, FLAGS.crops)
    except (FileNotFoundError, ValueError, OSError, tf.errors.OpError) as error:
        raise app.UsageError(f"--model={FLAGS.model}: {error}")
    try:
        spec = photos.face_crop_for(predict, FLAGS.crop_size, FLAGS.crop_margin, FLAGS.detector)
    except ValueError as error:
        raise app.UsageError(f"--detector={FLAGS.detector}: {error}")
    prior = None
    if FLAGS.adapt_prior:
        prior = release.recorded_prior(FLAGS.model)
        if prior is None:
            raise app.UsageError(f"--adapt_prior: {FLAGS.model} records no training prior (a released model's folder "
                                 "does, once scripts/record_prior.py has measured it).")
    print(f"face crop: {spec.detector} box, size {spec.size}, margin {spec.margin:g}"
          f"{'' if predict.face_crop else ' (none recorded with the model: defaults or flags)'}")
    detector = photos.photo_detector(spec, FLAGS.fallback_detector)
    from keras_alage import video

    results = []
    drawn_names = set()
    inputs = photos.image_paths(argv[1:])
    videos = [p for p in inputs if video.is_video(p)] + ([FLAGS.camera] if FLAGS.camera is not None else [])
    answered_videos = sum(run_video(source, predict, detector, spec) for source in videos)
    stills = [p for p in inputs if not video.is_video(p)]
    answered = photos.predict_photos(stills, predict, detector, spec, predict.input_size, FLAGS.min_confidence,
                                     FLAGS.batch_faces, no_face=FLAGS.no_face)
    if prior is not None:  # every answer waits for the population's prior
        from keras_alage import prior_shift

        answered = list(answered)
        faces_ = sum(len(r.faces) for r in answered)
        if faces_ < prior_shift.MIN_FACES:
            print(f"--adapt_prior: {faces_} faces are too few to estimate their age prior (at least "
                  f"{prior_shift.MIN_FACES}); answered as trained")
        else:
            answered = photos.adapt_to_population(answered, prior)
            print(f"answers moved to the age prior of these {faces_} faces (estimated from the answers; smoothing "
                  f"{prior['smoothing']:g})")
    for result in answered:
        path = result.path
        results.append(result)
        print(photos.describe(result), flush=True)
        if FLAGS.draw and result.faces:
            os.makedirs(FLAGS.draw, exist_ok=True)
            drawn = photos.draw(images.read_image(path), result)
            name = photos.drawing_name(path, drawn_names)
            cv2.imwrite(os.path.join(FLAGS.draw, name), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    if FLAGS.output:
        photos.write_results(results, FLAGS.output)
    failed = sum(1 for r in results if r.error)
    if results:
        print(f"{len(results) - failed} photo(s) with faces, {failed} skipped")
    faceless = sum(1 for r in results if r.error == "no face found")
    if faceless:
        print(f"{faceless} photo(s) with no face found: if they are face crops already, --no_face=whole answers them")
    if failed == len(results) and not answered_videos:
        raise app.UsageError(f"no photo could be answered ({failed} skipped; reasons above).")


if __name__ == "__main__":
    cli.run(main)
