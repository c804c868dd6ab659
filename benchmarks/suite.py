"""The benchmark suite: speed and memory of AL-ResNet training and serving, as same-run ratios.

  python benchmarks/suite.py                   # small setting: 112 px, batch 16 (a few minutes on 2 cores)
  python benchmarks/suite.py --full            # 224 px, batch 32, as in the paper
  python benchmarks/suite.py --output=bench.json
  python benchmarks/suite.py --full --mixed_precision=bfloat16 --intra_op_threads=2   # levers

Prints one table: the machine's matmul peak (TF and numpy, measured now), the model's counted
FLOPs, training images/s with and without XLA as a fraction of that peak (training counted as
3x the forward FLOPs), the attention branch's cost against the global-only network, serving
latency and throughput of the exported SavedModel against the Keras model, ten-crop against
centre crop, the tf.data pipeline's rate against the training step's, peak memory, and where
the training step's time goes by op type (TF profiler).
"""

import json

from absl import flags, logging

from keras_alage import cli
from keras_alage.studies.benchmarks import suite
from keras_alage.training.options import MIXED_PRECISION
from alage_pipelines import files

flags.DEFINE_bool("full", False, "The paper's setting: 224 px, batch 32 (slow on a CPU).")
flags.DEFINE_integer("input_size", None, "Input side; default 112, or 224 with --full.")
flags.DEFINE_integer("batch_size", None, "Training batch; default 16, or 32 with --full.")
flags.DEFINE_integer("depth", 34, "ResNet depth.")
flags.DEFINE_integer("steps", 3, "Training steps per timing (best of 3 timings).")
flags.DEFINE_integer("latency_calls", 30, "Single-image requests timed per serving path.")
flags.DEFINE_bool("xla", True, "Also time the XLA-compiled training step.")
flags.DEFINE_enum("mixed_precision", "off", list(MIXED_PRECISION), "Compute dtype of the model.")
flags.DEFINE_integer("intra_op_threads", 0, "TF intra-op threads (0: TF's default, one per core).")
flags.DEFINE_integer("inter_op_threads", 0, "TF inter-op threads (0: TF's default).")
flags.DEFINE_bool("profile", True, "Break the training step's time down by op type (TF profiler).")
flags.DEFINE_integer("profile_top", 10, "Op types to print from the profile.")
flags.DEFINE_bool("batch_norm_reference", True,
                  "Also time the training step with Keras's BatchNormalization in place of the fused kernel.")
flags.DEFINE_string("output", None, "Write the results as JSON here.")
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    logging.set_verbosity(logging.WARNING)
    results = suite.run_suite(
        FLAGS.full, FLAGS.input_size, FLAGS.batch_size, FLAGS.depth, FLAGS.steps, FLAGS.latency_calls, FLAGS.xla,
        FLAGS.mixed_precision, FLAGS.intra_op_threads, FLAGS.inter_op_threads, FLAGS.profile, FLAGS.profile_top,
        FLAGS.batch_norm_reference, say=lambda line: print(line, flush=True))
    if FLAGS.output:
        files.write_atomically(FLAGS.output, json.dumps(results, indent=1, sort_keys=True))


if __name__ == "__main__":
    cli.run(main)
