#!/bin/sh
# The CPU-scale experiment end to end (BUILD_NOTES.md, "Real results at CPU scale"):
# UTKFace pretraining -> FG-NET 5-fold global -> attention stage, for AL-ResNet-18 and
# AL-RoR-18, then the report. About 75 minutes on 2 cores. Every step resumes when rerun.
#   sh experiments/cpu_fgnet.sh            (needs data/utkface and data/fgnet: make data)
set -eu
PYTHON=${PYTHON:-.venv/bin/python}
$PYTHON scripts/train.py --flagfile=cpu_utkface_pretrain.flags
for net in resnet18:1 ror18:3; do
  name=${net%:*}; levels=${net#*:}
  $PYTHON scripts/train.py --flagfile=cpu_fgnet_global.flags --ror_levels="$levels" \
    --run_dir="runs/cpu/fgnet_$name/global"
  $PYTHON scripts/train.py --flagfile=cpu_fgnet_attention.flags --ror_levels="$levels" \
    --run_dir="runs/cpu/fgnet_$name/attention" \
    --init_checkpoint="runs/cpu/fgnet_$name/global/{fold}/model.keras"
done
