#!/bin/sh
# The paper's protocol for the final recipe: FG-NET leave-one-person-out (82 folds), the global head
# fine-tuned (a) against the attention LSTM branch (d), with the settings validation chose on the
# 5-fold build (experiments/attention_evidence.sh; pass them as CHOSEN_* below). One seed. Every fold
# resumes when rerun. About 40 minutes on 2 cores after the build:
#   python scripts/build_tfrecords.py --dataset=fgnet --data_dir=../shared/data/fgnet \
#     --output_dir=data/fgnet_release_lopo --crop_from_model=models/al_dlib_resnet_utkface --age_classes=utkface
set -eu
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/evidence_lopo}
DATA=${DATA:-data/fgnet_release_lopo}
BOX=${CHOSEN_BOX:-1}; EPOCHS=${CHOSEN_EPOCHS:-8}; LR_A=${CHOSEN_LR_A:-0.01}; LR_D=${CHOSEN_LR_D:-0.01}
common="--flagfile=configs/evidence_fgnet.flags --data_dir=$DATA --epochs=$EPOCHS --lr_decay_epochs=$((EPOCHS / 2))"
[ -f "$OUT/a/results.json" ] || $PYTHON scripts/train.py $common --stage=global_head --max_box_size=$BOX \
  --learning_rate=$LR_A --run_dir=$OUT/a > /dev/null
[ -f "$OUT/d/results.json" ] || $PYTHON scripts/train.py $common --stage=attention --max_box_size=$BOX \
  --learning_rate=$LR_D --run_dir=$OUT/d > /dev/null
$PYTHON scripts/attention_evidence.py --data_dir=$DATA --reference=a --variant=a=$OUT/a --variant=d=$OUT/d \
  --chosen="on the 5-fold validation parts: box bound $BOX, $EPOCHS epochs, learning rate a $LR_A, d $LR_D" \
  --translation_faces=8 --output=docs/results/fgnet_evidence_lopo
