"""Builds face-cropped TFRecords of a data set in its distributed layout, with a manifest.

  python scripts/build_tfrecords.py --dataset=fgnet --data_dir=../shared/data/fgnet \
      --output_dir=data/fgnet
  python scripts/build_tfrecords.py --dataset=utkface \
      --data_dir=../shared/data/utkface/crop_part1 --output_dir=data/utkface

The output holds shards per part (`fold0-00000-of-00002.tfrecord`, ... or `train-*`,
`test-*`), `manifest.json` (counts per part and shard, checksums, every skipped photo and
why, the split) and `records.jsonl` (one line per photo). Extra Beam options go through
--beam_arg (e.g. --beam_arg=--runner=DataflowRunner).
"""

import os

from absl import flags

from keras_alage import cli
from alage_pipelines import faces, runners, sources
from alage_pipelines.readers import lap

flags.DEFINE_enum("dataset", None, sorted(sources.SOURCES), "Data set, in its distributed layout.")
flags.DEFINE_string("data_dir", None, "Where the data set is: its folder, or its CSV / .mat file.")
flags.DEFINE_string("image_root", None, "Folder the image paths of a CSV or .mat are relative to.")
flags.DEFINE_string("output_dir", None, "Folder to create with the shards and manifest.")
flags.DEFINE_bool("overwrite", False, "Replace an existing --output_dir.")
flags.DEFINE_enum("protocol", None, sources.PROTOCOLS, "Split protocol; default: the paper's for the data set "
                  "(FG-NET: lopo, leave one person out, 82 folds; subject_kfold with --folds is the CPU-scale "
                  "reduction).")
flags.DEFINE_integer("folds", 5, "k of --protocol=subject_kfold.")
flags.DEFINE_float("test_fraction", 0.1, "Test share of random and subject splits (MORPH: 0.2).")
flags.DEFINE_integer("seed", 0, "Seed of the split and of --limit.")
flags.DEFINE_enum("lap_test_split", "test", list(lap.TEST_SPLITS), "LAP split to test on.")
flags.DEFINE_list("morph_races", None, "MORPH race codes to keep (the paper: W).")
flags.DEFINE_integer("limit", None, "Keep this many records, drawn with --seed (quick runs; MORPH: 5475).")
flags.DEFINE_float("min_face_score", 1.0, "IMDB-WIKI face score threshold.")
flags.DEFINE_string("age_classes", None, "Class space; default: the data set's own.")
flags.DEFINE_bool("detect", None, "Detect faces (default: yes unless the set is already face crops).")
flags.DEFINE_enum("no_face", "skip", list(faces.BUILD_NO_FACE), "Photos without a face: skip, or keep the centre crop.")
flags.DEFINE_bool("full_search", False, "Try all 27 rotations for every photo (the paper's recipe).")
flags.DEFINE_float("min_confidence", None, "An upright face this confident ends the rotation search (default: "
                   "the detector's own: 0.9 for MTCNN's probability, 0.2 for dlib's HOG margin).")
flags.DEFINE_integer("dlib_upsample", 0, "With --detector=dlib: times the photo is doubled before HOG (1 finds "
                     "faces from about 40 px instead of 80, about 4x slower).")
flags.DEFINE_enum("detector", "mtcnn", list(faces.DETECTOR_NAMES), "Face detector (dlib: HOG + 5-point alignment, about "
                  "10x faster); --crop_margin is relative to its box.")
flags.DEFINE_integer("crop_size", 256, "Side of the stored face crops.")
flags.DEFINE_float(
    "crop_margin", 0.4,
    "Box enlargement (0.4: 40% in width and height; negative cuts inside the box). To fine-tune a model "
    "pretrained on ready-made crops, cut alike: scripts/measure_crop_margin.py measures it.")
flags.DEFINE_string(
    "crop_from_model", None,
    "Cut faces as this model expects (its recorded face crop: a released model's folder, a run folder with "
    "face_crop.json, or an exported SavedModel); overrides --crop_size, --crop_margin and --detector.")
flags.DEFINE_string("cache_dir", None, "Detection cache; default: detection-cache/ beside --output_dir.")
flags.DEFINE_integer("workers", os.cpu_count() or 1, "Parallel worker processes.")
flags.DEFINE_integer("records_per_shard", 1000, "Target records per shard.")
flags.DEFINE_multi_string("beam_arg", [], "Extra Apache Beam pipeline option (repeatable), e.g. another runner's.")
flags.DEFINE_enum("runner", "direct", runners.RUNNERS, "direct: --workers local processes; dask: Beam's DaskRunner on "
                  "--dask_scheduler, or on a local cluster of --workers worker processes when none is given.")
flags.DEFINE_string("dask_scheduler", None, "A distributed scheduler's address (tcp://host:8786) for --runner=dask.")
flags.DEFINE_bool("verbose", False, "Show Apache Beam's own log (its runner's and its worker processes'); without it "
                  "the build prints one progress line per stage and Beam's log is kept only where the build fails.")
flags.mark_flags_as_required(["dataset", "data_dir", "output_dir"])
cli.require_positive("folds", "crop_size", "workers", "records_per_shard", "limit")
FLAGS = flags.FLAGS
