#!/bin/sh
# The CPU-scale experiment end to end (BUILD_NOTES.md, "Real results at CPU scale"):
# UTKFace pretraining (7 epochs, then a 12-epoch warm restart) -> FG-NET 5-fold, cut like
# UTKFace's chips, global stage -> attention stage (box at most half the map), for AL-ResNet-18
# and AL-RoR-18, and for AL-ResNet-18 with a new local head (box 0.5 and unbounded); the UTKFace
# held-out errors per gender and race; the report with the box grid.
# About 2 hours 40 minutes on 2 cores. Every training step resumes when rerun.
#   make experiment        (builds data/utkface and data/fgnet_chip first)
set -eu
PYTHON=${PYTHON:-.venv/bin/python}
$PYTHON scripts/train.py --flagfile=cpu_utkface_pretrain.flags
$PYTHON scripts/train.py --flagfile=cpu_utkface_continue.flags
$PYTHON scripts/evaluate.py --data_dir=data/utkface --run_dir=runs/cpu/utkface_resnet18_long \
  --output_dir=runs/cpu/utkface_resnet18_long/held_out --group_by=gender,race --group_head=global --batch_size=64
for net in resnet18:1 ror18:3; do
  name=${net%:*}; levels=${net#*:}
  $PYTHON scripts/train.py --flagfile=cpu_fgnet_global.flags --ror_levels="$levels" \
    --run_dir="runs/cpu/fgnet_chip_$name/global"
  $PYTHON scripts/train.py --flagfile=cpu_fgnet_attention.flags --ror_levels="$levels" \
    --run_dir="runs/cpu/fgnet_chip_$name/attention" \
    --init_checkpoint="runs/cpu/fgnet_chip_$name/global/{fold}/model.keras"
done
# The attention stage again with the local head from random weights, with the box at most half
# the map and with the paper's unbounded box (BUILD_NOTES.md); same global models.
for box in 0.5:newhead 1:box100; do
  size=${box%:*}; name=${box#*:}
  mkdir -p "runs/cpu/fgnet_chip_resnet18_$name"
  ln -sfn ../fgnet_chip_resnet18/global "runs/cpu/fgnet_chip_resnet18_$name/global"
  $PYTHON scripts/train.py --flagfile=cpu_fgnet_attention.flags --max_box_size="$size" --nolocal_head_from_global \
    --run_dir="runs/cpu/fgnet_chip_resnet18_$name/attention" \
    --init_checkpoint="runs/cpu/fgnet_chip_resnet18/global/{fold}/model.keras"
done
$PYTHON experiments/report_experiment.py --data_dir=data/fgnet_chip --grid_images=48 \
  --run=AL-ResNet-18=runs/cpu/fgnet_chip_resnet18 \
  --run="AL-ResNet-18, new local head"=runs/cpu/fgnet_chip_resnet18_newhead \
  --run="AL-ResNet-18, new local head, box 1"=runs/cpu/fgnet_chip_resnet18_box100 \
  --run=AL-RoR-18=runs/cpu/fgnet_chip_ror18 \
  --output=docs/results/attention/cpu_fgnet.md --grid=docs/results/attention/cpu_fgnet_attention_boxes.jpg
