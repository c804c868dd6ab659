"""The paper's scale on a GPU (`studies.paper_scale`): AL-ResNet-34 at 224 px, global stage,
MirroredStrategy over every GPU, bf16 and XLA, on the UTKFace build; a few minutes on one GPU.

  make data/utkface_dlib/manifest.json
  python benchmarks/gpu_paper_scale.py --data_dir=data/utkface_dlib --output=docs/results/performance/gpu_paper_scale.json
  python benchmarks/gpu_paper_scale.py --data_dir=data/utkface_dlib --tiny     # the same path on a CPU, seconds

Prints images/s, the share of the GPUs' bf16 peak, peak memory, the MAE after its epochs, and
whether one float32 training step on the GPU matches the CPU's.
"""

import dataclasses
import json
import sys

from absl import app, flags

from keras_alage import cli
from keras_alage.studies import paper_scale
from alage_pipelines import files

flags.DEFINE_string("data_dir", "data/utkface_dlib", "A UTKFace build (101 age classes).")
flags.DEFINE_bool("tiny", False, "AL-ResNet-18 at 32 px, two steps per epoch: the path on a CPU in seconds.")
flags.DEFINE_integer("epochs", None, "Epochs (default: the settings').")
flags.DEFINE_integer("max_steps_per_epoch", None, "Cap on steps per epoch (default: one pass).")
flags.DEFINE_integer("batch_per_replica", None, "Images per replica per step (default: 128).")
flags.DEFINE_string("output", None, "JSON output (written atomically).")
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    settings = paper_scale.TINY if FLAGS.tiny else paper_scale.Settings()
    changes = {k: getattr(FLAGS, k) for k in ("epochs", "max_steps_per_epoch", "batch_per_replica")
               if getattr(FLAGS, k) is not None}
    settings = dataclasses.replace(settings, **changes)
    try:
        result = paper_scale.run(FLAGS.data_dir, settings)
    except (OSError, ValueError) as error:
        raise app.UsageError(str(error))
    result["command"] = " ".join(["python benchmarks/gpu_paper_scale.py"] + sys.argv[1:])
    if FLAGS.output:
        files.write_atomically(FLAGS.output, json.dumps(result, indent=1) + "\n")
    share = result["share_of_bf16_peak"]
    print(f"{result['devices']}: {result['images_per_second']:.1f} images/s, "
          f"{'share of bf16 peak unknown' if share is None else f'{100 * share:.1f}% of the bf16 peak'}, "
          f"peak memory {result['peak_device_memory_gib'] or result['peak_host_rss_mib']}, "
          f"test MAE {result['test_mae_global_head']:.2f} after {settings.epochs} epochs; "
          f"step parity {result['step_parity']}")


if __name__ == "__main__":
    cli.run(main)
