"""Report of a staged experiment: models side by side with the mean-age floor, per fold and
mean +- std, per age band, and a grid of test faces with their attention boxes.

  python experiments/report_experiment.py --data_dir=data/fgnet \
      --run=AL-ResNet-18=runs/cpu/fgnet_resnet18 --run=AL-RoR-18=runs/cpu/fgnet_ror18 \
      --output=docs/results/attention/cpu_fgnet.md --grid=docs/results/attention/cpu_fgnet_boxes.png

Each --run folder holds the `global/` and `attention/` stage runs of scripts/train.py over the
same folds. The grid shows the first --grid_images test faces of --grid_fold from the first
run: red the attention box after the attention stage, grey the box before it.
"""

from absl import app, flags

from keras_alage import cli
from keras_alage.studies import reporting

flags.DEFINE_string("data_dir", None, "TFRecord build the runs were trained on.")
flags.DEFINE_multi_string("run", [], "NAME=FOLDER of a staged run (global/ and attention/ inside); repeatable.")
flags.DEFINE_string("output", None, "Markdown report to write.")
flags.DEFINE_string("grid", None, "Image (.png or .jpg) of test faces with their attention boxes (optional).")
flags.DEFINE_string("grid_fold", "fold0", "Fold whose test faces the grid shows.")
flags.DEFINE_integer("grid_images", 32, "Faces in the grid.")
flags.DEFINE_integer("grid_columns", 8, "Faces per grid row.")
flags.mark_flags_as_required(["data_dir", "output"])
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    runs = cli.named_folders(FLAGS.run, "run")
    try:
        print(reporting.experiment_report(FLAGS.data_dir, runs, FLAGS.output, FLAGS.grid, FLAGS.grid_fold,
                                          FLAGS.grid_images, FLAGS.grid_columns))
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(str(error))


if __name__ == "__main__":
    cli.run(main)
