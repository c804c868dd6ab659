"""Writes a trained run's model as a release folder (fp16 weights + model.json) under models/.

  python experiments/release_model.py --run_dir=runs/release/attention \
      --output=models/al_resnet18_utkface --crop_margin=0.04 --provenance=runs/release/provenance.json

The architecture comes from the run's flags.txt; the face crop is the one the training faces
were cut like (UTKFace's chips: `scripts/measure_crop_margin.py`); --provenance is a JSON file
of what the model card needs (data, terms, commands, measured errors). The weights' SHA-256 is
printed and recorded; the release is refused if its fp16 answers differ from the run's model.
"""

import json
import os

from absl import app, flags

from keras_alage import cli
from keras_alage.models import attention, release
from keras_alage.studies import release_choice
from keras_alage.training import fold_runs
from alage_pipelines import augment, build, dataset, faces, files

flags.DEFINE_string("run_dir", None, "Training run folder holding model.keras and flags.txt.")
flags.DEFINE_string("output", None, "Release folder to write (models/NAME).")
flags.DEFINE_integer("crop_size", 256, "Side of the face crops the model was trained on.")
flags.DEFINE_float("crop_margin", None, "Box enlargement that cuts photos like the training faces.")
flags.DEFINE_enum("detector", "mtcnn", list(faces.DETECTOR_NAMES), "The detector whose box --crop_margin enlarges.")
flags.DEFINE_enum("crops", "ten", list(augment.CROPS), "How prediction averages a "
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
    import dataclasses

    import numpy as np

    model_path = os.path.join(FLAGS.run_dir, "model.keras")
    flags_path = os.path.join(FLAGS.run_dir, "flags.txt")
    for path in (model_path, flags_path):
        if not os.path.exists(path):
            raise app.UsageError(f"--run_dir={FLAGS.run_dir}: {os.path.basename(path)} not found; train it first.")
    provenance = {}
    if FLAGS.provenance:
        try:
            with open(FLAGS.provenance, encoding="utf-8") as f:
                provenance = json.load(f)
        except (OSError, json.JSONDecodeError) as error:
            raise app.UsageError(f"--provenance={FLAGS.provenance}: {error}")
    model = release.load_model(model_path)
    attention.freeze_attention_state(model)
    config = fold_runs.config_from_run(flags_path)
    if FLAGS.local_weight_from:
        try:
            FLAGS.local_weight = release_choice.best_local_weight(*FLAGS.local_weight_from)
        except (OSError, ValueError, KeyError) as error:
            raise app.UsageError(f"--local_weight_from={FLAGS.local_weight_from}: {error}")
        print(f"local weight {FLAGS.local_weight:g}: lowest validation MAE in {', '.join(FLAGS.local_weight_from)}")
        chosen_on = [files.portable_path(path) for path in FLAGS.local_weight_from]
        provenance = dict(provenance, local_weight_chosen_on=chosen_on[0] if len(chosen_on) == 1 else chosen_on)
    if FLAGS.local_weight is not None:
        config = dataclasses.replace(config, local_weight=FLAGS.local_weight)
        model.get_layer("combined_probs").local_weight = FLAGS.local_weight
    crop = faces.CropSpec(FLAGS.crop_size, FLAGS.crop_margin, detector=FLAGS.detector)
    if FLAGS.probe_build:
        try:
            probe_build = build.Build.open(FLAGS.probe_build, verify=True)
            probes = dataset.first_test_faces(probe_build, FLAGS.probe_faces, config.input_size)
        except (OSError, ValueError, KeyError) as error:
            raise app.UsageError(f"--probe_build={FLAGS.probe_build}: {error}")
    else:
        probes = np.random.default_rng(0).normal(0, 1, (8, config.input_size, config.input_size, 3)).astype(np.float32)
    try:
        digest, difference = release.save_checked(model, FLAGS.output, config, crop, provenance, FLAGS.crops, probes,
                                                  FLAGS.max_age_difference)
    except ValueError as error:
        raise app.UsageError(str(error))
    size = sum(os.path.getsize(os.path.join(FLAGS.output, n)) for n in os.listdir(FLAGS.output))
    print(f"released {FLAGS.output}: {size / 2**20:.1f} MiB, weights sha256 {digest}, "
          f"fp16 vs fp32 largest age difference {difference:.4f} years on {len(probes)} "
          f"{'faces' if FLAGS.probe_build else 'random images'}")


if __name__ == "__main__":
    cli.run(main)
