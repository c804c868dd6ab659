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

from absl import flags

from keras_alage import cli
from keras_alage.serving.options import NO_FACE
from alage_pipelines import faces
from alage_pipelines.options import CROPS

flags.DEFINE_string("model", None, "SavedModel folder (scripts/export.py), .keras model or released model's "
                    "folder; default: the released model in models/.")
flags.DEFINE_enum("crops", None, list(CROPS), "Crops for a .keras model "
                  "(default ten) or a released model (default: the crops it records); a SavedModel has its own.")
flags.DEFINE_string("output", None, "Write the results to this .csv or .json file (a .csv as answers come, to "
                    "<output>.partial until the run ends; a rerun after an interruption keeps its answers).")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output file (it is kept otherwise).")
flags.DEFINE_string("draw", None, "Write drawn photos into this folder (an earlier drawing is replaced; any other "
                    "file keeps its name and the drawing takes another).")
flags.DEFINE_float("min_confidence", None, "Faces scoring below this are not reported upright (default: the "
                   "detector's own: 0.9 for MTCNN's probability, 0.2 for dlib's HOG margin).")
flags.DEFINE_enum("detector", None, list(faces.DETECTOR_NAMES), "Face detector; default: the one the model's recorded crop "
                  "was measured with (MTCNN where none is recorded). Keep the default with a release: its networks "
                  "were measured on their own cut (MTCNN boxes at --crop_margin=0.21 take in forehead and hair and "
                  "scored 10.4 years where the default scored 7.6 on a held-out population).")
flags.DEFINE_enum("fallback_detector", "mtcnn", [*faces.DETECTOR_NAMES, ""], "Where the detector finds no face, this one "
                  "looks (its box rescaled to the detector's; '' for none).")
flags.DEFINE_enum("no_face", "skip", list(NO_FACE), "A photo where no face is found: report and skip it, or "
                  "answer it as one face filling its centre square ('whole': for ready-made face chips, such as "
                  "UTKFace's, whose face fills the picture).")
flags.DEFINE_integer("batch_faces", 32, "Faces the network answers in one call (across photos or video frames); "
                     "detection of the next photos or frames overlaps it.")
flags.DEFINE_bool("adapt_prior", False, "Photos of one population (a class, a ward...): move the answers to these "
                  "faces' own age prior, estimated from the answers alone (EM; needs a one-network release's recorded "
                  "prior, e.g. --model=models/al_dlib_resnet_utkface). Each answer then depends on the other photos; "
                  "video is answered as is. It helps only when the population's ages differ from the training faces' "
                  "while its faces look alike (FG-NET: 2.80 from 3.66); on faces unlike the training faces it made "
                  "answers worse (7.59 -> 8.10 years on a held-out population): leave it off there.")
flags.DEFINE_integer("camera", None, "Read this camera (OpenCV index) as a video instead of files.")
flags.DEFINE_integer("max_frames", None, "Stop a video or camera after this many frames.")
flags.DEFINE_integer("crop_size", None, "Face crop side; default: the model's recorded crop, else 256.")
flags.DEFINE_float("crop_margin", None, "Face box enlargement; default: the model's recorded crop (training "
                   "writes face_crop.json, export carries it), else 0.4. Must match the faces it was trained on.")
cli.define_compute_flags(__name__)
cli.require_positive("batch_faces", "max_frames", "crop_size")
FLAGS = flags.FLAGS
