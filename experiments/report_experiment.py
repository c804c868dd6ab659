"""Report of a staged experiment: models side by side with the mean-age floor, per fold and
mean +- std, per age band, and a grid of test faces with their attention boxes.

  python experiments/report_experiment.py --data_dir=data/fgnet \
      --run=AL-ResNet-18=runs/cpu/fgnet_resnet18 --run=AL-RoR-18=runs/cpu/fgnet_ror18 \
      --output=docs/results/attention/cpu_fgnet.md --grid=docs/results/attention/cpu_fgnet_boxes.png

Each --run folder holds the `global/` and `attention/` stage runs of scripts/train.py over the
same folds. The grid shows the first --grid_images test faces of --grid_fold from the first
run: red the attention box after the attention stage, grey the box before it.
"""

import os

from absl import app, flags

from keras_alage import cli
from keras_alage.models import release
from keras_alage.studies import reporting
from alage_pipelines import build, dataset, files

flags.DEFINE_string("data_dir", None, "TFRecord build the runs were trained on.")
flags.DEFINE_multi_string("run", [], "NAME=FOLDER of a staged run (global/ and attention/ inside); repeatable.")
flags.DEFINE_string("output", None, "Markdown report to write.")
flags.DEFINE_string("grid", None, "Image (.png or .jpg) of test faces with their attention boxes (optional).")
flags.DEFINE_string("grid_fold", "fold0", "Fold whose test faces the grid shows.")
flags.DEFINE_integer("grid_images", 32, "Faces in the grid.")
flags.DEFINE_integer("grid_columns", 8, "Faces per grid row.")
flags.mark_flags_as_required(["data_dir", "output"])
FLAGS = flags.FLAGS


def _runs(values):
    runs = {}
    for value in values:
        name, _, folder = value.partition("=")
        if not name or not folder:
            raise app.UsageError(f"--run must be NAME=FOLDER; received {value!r}.")
        if not os.path.isdir(folder):
            raise app.UsageError(f"--run {name}: {folder} is not a folder.")
        runs[name] = folder
    if not runs:
        raise app.UsageError("Give at least one --run=NAME=FOLDER.")
    return runs


def main(argv):
    cli.no_arguments(argv)
    runs = _runs(FLAGS.run)
    extension = os.path.splitext(FLAGS.grid or "")[1].lower()
    if FLAGS.grid and extension not in (".png", ".jpg", ".jpeg"):
        raise app.UsageError(f"--grid must end in .png, .jpg or .jpeg; received {FLAGS.grid!r}.")
    import cv2

    try:
        rows = reporting.comparison_rows(FLAGS.data_dir, runs)
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(str(error))
    dataset_name = build.read_build_manifest(FLAGS.data_dir)["dataset"]
    text = (f"# {dataset_name}: {', '.join(runs)}\n\nWritten by `experiments/report_experiment.py` from the runs' "
            f"results.json files ({', '.join(runs.values())}).\n\n" + reporting.staged_runs_markdown(rows))
    if FLAGS.grid:
        name, run_dir = next(iter(runs.items()))
        models = {stage: release.load_model(os.path.join(run_dir, stage, FLAGS.grid_fold, "model.keras"))
                  for stage in ("global", "attention")}
        size = int(models["attention"].input_shape[1])
        faces = {
            stage: reporting.predict_boxes(
                model,
                dataset.make_dataset(build.Build.open(FLAGS.data_dir).fold_files(FLAGS.grid_fold, "test"),
                                     dataset.DatasetConfig(32, size, crops="center")),
                FLAGS.grid_images,
            )
            for stage, model in models.items()
        }
        after, before = faces["attention"], faces["global"]
        captions = [f"{a:.0f} -> {p:.1f}" for a, p in zip(after["age"], after["predicted"])]
        grid = reporting.box_grid(after["images"], after["box"], captions, FLAGS.grid_columns, before=before["box"])
        ok, encoded = cv2.imencode(extension, grid, [cv2.IMWRITE_JPEG_QUALITY, 85] if extension != ".png" else [])
        if not ok:
            raise RuntimeError(f"Could not encode the grid as {extension}.")
        files.write_atomically(FLAGS.grid, encoded.tobytes())
        link = os.path.relpath(FLAGS.grid, os.path.dirname(os.path.abspath(FLAGS.output)))
        text += "\n" + reporting.box_markdown(f"{name}, {FLAGS.grid_fold} test faces", before["box"], after["box"], link)
    files.write_atomically(FLAGS.output, text)
    print(text)


if __name__ == "__main__":
    cli.run(main)
