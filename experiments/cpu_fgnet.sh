#!/bin/sh
# The CPU-scale experiment end to end (BUILD_NOTES.md, "Real results at CPU scale"):
# UTKFace pretraining -> FG-NET 5-fold global -> attention stage, for AL-ResNet-18 and
# AL-RoR-18, and with a bounded attention box; the UTKFace held-out errors per gender and race;
# the report with the box grid.
# About 90 minutes on 2 cores. Every training step resumes when rerun.
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
# The attention stage again with the box at most half the map's side (the unbounded box grows
# to the whole 4x4 map: BUILD_NOTES.md); same global models.
mkdir -p runs/cpu/fgnet_resnet18_box50
ln -sfn ../fgnet_resnet18/global runs/cpu/fgnet_resnet18_box50/global
$PYTHON scripts/train.py --flagfile=cpu_fgnet_attention.flags --max_box_size=0.5 \
  --run_dir=runs/cpu/fgnet_resnet18_box50/attention \
  --init_checkpoint="runs/cpu/fgnet_resnet18/global/{fold}/model.keras"
$PYTHON scripts/report_experiment.py --data_dir=data/fgnet --grid_images=48 \
  --run="AL-ResNet-18 (box 0.5)"=runs/cpu/fgnet_resnet18_box50 \
  --run=AL-ResNet-18=runs/cpu/fgnet_resnet18 --run=AL-RoR-18=runs/cpu/fgnet_ror18 \
  --output=docs/results/cpu_fgnet.md --grid=docs/results/cpu_fgnet_attention_boxes.jpg
