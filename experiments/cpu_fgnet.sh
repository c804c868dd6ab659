#!/bin/sh
# The CPU-scale experiment end to end (BUILD_NOTES.md, "Real results at CPU scale"):
# UTKFace pretraining -> FG-NET 5-fold global -> attention stage, for AL-ResNet-18 and
# AL-RoR-18; the UTKFace held-out errors per gender and race; the report with the box grid.
# About 80 minutes on 2 cores. Every training step resumes when rerun.
#   make experiment        (builds data/utkface and data/fgnet first)
set -eu
PYTHON=${PYTHON:-.venv/bin/python}
$PYTHON scripts/train.py --flagfile=cpu_utkface_pretrain.flags
$PYTHON scripts/evaluate.py --data_dir=data/utkface --run_dir=runs/cpu/utkface_resnet18 \
  --output_dir=runs/cpu/utkface_resnet18/held_out --group_by=gender,race --group_head=global --batch_size=64
for net in resnet18:1 ror18:3; do
  name=${net%:*}; levels=${net#*:}
  $PYTHON scripts/train.py --flagfile=cpu_fgnet_global.flags --ror_levels="$levels" \
    --run_dir="runs/cpu/fgnet_$name/global"
  $PYTHON scripts/train.py --flagfile=cpu_fgnet_attention.flags --ror_levels="$levels" \
    --run_dir="runs/cpu/fgnet_$name/attention" \
    --init_checkpoint="runs/cpu/fgnet_$name/global/{fold}/model.keras"
done
$PYTHON scripts/report_experiment.py --data_dir=data/fgnet \
  --run=AL-ResNet-18=runs/cpu/fgnet_resnet18 --run=AL-RoR-18=runs/cpu/fgnet_ror18 \
  --output=docs/results/cpu_fgnet.md --grid=docs/results/cpu_fgnet_attention_boxes.png
