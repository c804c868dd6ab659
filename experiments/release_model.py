"""Writes a trained run's model as a release folder (fp16 weights + model.json) under models/.

  python experiments/release_model.py --run_dir=runs/release/attention \
      --output=models/al_resnet18_utkface --crop_margin=0.04 --provenance=runs/release/provenance.json

The architecture comes from the run's flags.txt; the face crop is the one the training faces
were cut like (UTKFace's chips: `scripts/measure_crop_margin.py`); --provenance is a JSON file
of what the model card needs (data, terms, commands, measured errors). The weights' SHA-256 is
printed and recorded; the release is refused if its fp16 answers differ from the run's model.
"""

from absl import app, flags

from keras_alage import cli
from keras_alage.studies.releases import al_model
from alage_pipelines import faces
from alage_pipelines.options import CROPS

flags.DEFINE_string("run_dir", None, "Training run folder holding model.keras and flags.txt.")
flags.DEFINE_string("output", None, "Release folder to write (models/NAME).")
flags.DEFINE_integer("crop_size", 256, "Side of the face crops the model was trained on.")
flags.DEFINE_float("crop_margin", None, "Box enlargement that cuts photos like the training faces.")
flags.DEFINE_enum("detector", "mtcnn", list(faces.DETECTOR_NAMES), "The detector whose box --crop_margin enlarges.")
flags.DEFINE_enum("crops", "ten", list(CROPS), "How prediction averages a "
                  "face by default (choose on validation: scripts/evaluate.py --crops).")
flags.DEFINE_float("local_weight", None, "The combination's local weight (the paper's lambda), if other than the "
                   "run's (choose on validation: scripts/evaluate.py --local_weights).")
flags.DEFINE_list("local_weight_from", [], "Validation reports (results.json of scripts/evaluate.py "
                  "--local_weights=...): release with the local weight of their lowest mean combined MAE.")
flags.DEFINE_string("provenance", None, "JSON file with the model card's facts, stored in model.json.")
flags.DEFINE_float("max_age_difference", 0.05, "Largest fp16-vs-fp32 difference in years allowed on the probe faces.")
flags.DEFINE_string("probe_build", None, "TFRecord build whose first test faces (centre crops) probe the fp16 weights; "
                    "default: random images.")
flags.DEFINE_integer("probe_faces", 64, "How many faces of --probe_build.")
flags.mark_flags_as_required(["run_dir", "output", "crop_margin"])
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    try:
        print(al_model.release_run(
            FLAGS.run_dir, FLAGS.output, faces.CropSpec(FLAGS.crop_size, FLAGS.crop_margin, detector=FLAGS.detector),
            FLAGS.crops, FLAGS.local_weight, FLAGS.local_weight_from, FLAGS.provenance, FLAGS.max_age_difference,
            FLAGS.probe_build, FLAGS.probe_faces))
    except ValueError as error:
        raise app.UsageError(str(error))


if __name__ == "__main__":
    cli.run(main)
