"""Does dlib's age network keep its accuracy at a size whose last map is 7x7? Its layout is fully
convolutional, so the released model's weights run at any input; at 120 px its map is 7x7 (64 px:
3x3). Scores the global head (dlib's network) on UTKFace's held-out faces, centre view, at each size.

  python benchmarks/dlib_map_size.py --data_dir=data/utkface_dlib --sizes=64,96,120
"""

import json
import os
import sys

from absl import flags

from keras_alage import cli
from keras_alage.evaluation import scoring
from keras_alage.models import age_model, release
from alage_pipelines import build, dataset, files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("model", os.path.join(REPO, "models", "al_dlib_resnet_utkface"), "A one-network dlib-layout release.")
flags.DEFINE_string("data_dir", "data/utkface_dlib", "Its build (the held-out part is scored).")
flags.DEFINE_list("sizes", ["64", "96", "120"], "Input sizes.")
flags.DEFINE_string("output", os.path.join(REPO, "docs", "results", "attention", "dlib_map_size.json"), "JSON output.")
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    released, _, description = release.load(FLAGS.model)
    files_ = build.Build.open(FLAGS.data_dir, verify=True).part_files(["test"])
    rows = {}
    for size in (int(s) for s in FLAGS.sizes):
        config = age_model.ModelConfig(**dict(description["model"], input_size=size,
                                             crop_size=tuple(description["model"]["crop_size"])))
        model = age_model.build_age_model(config, class_ages=description["class_ages"])
        model.set_weights(released.get_weights())
        scores = scoring.evaluate_model(model, dataset.make_dataset(files_, dataset.DatasetConfig(64, size, crops="center")),
                                        description["class_ages"])
        rows[str(size)] = {"map": list(model.get_layer("backbone").output_shape[1:3]), "faces": scores["count"],
                           "global_head_mae": scores["global"]["mae"]}
        print(f"{size} px: map {rows[str(size)]['map']}, MAE {scores['global']['mae']:.3f} on {scores['count']} faces",
              flush=True)
    report = {"model": os.path.relpath(FLAGS.model, REPO), "sizes": rows,
              "command": " ".join(["python benchmarks/dlib_map_size.py"] + sys.argv[1:])}
    files.write_atomically(FLAGS.output, json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    cli.run(main)
