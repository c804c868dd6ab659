#!/bin/sh
# The paper's protocol for the final comparison: FG-NET leave-one-person-out (82 folds), in the
# paper's order (experiments/attention_evidence_after_global.sh): the global head fine-tuned from the
# released model (a), then from it the global head for the same extra epochs (a2) against the
# attention LSTM branch (d2), with the settings validation chose on the 5-fold build (CHOSEN_*). One
# seed; every fold resumes when rerun. Cost on 2 cores: about 10 s per fold and stage at 8 epochs, so
# about 45 minutes for the three stages, plus the build:
#   python scripts/build_tfrecords.py --dataset=fgnet --data_dir=../shared/data/fgnet \
#     --output_dir=data/fgnet_release_lopo --crop_from_model=models/al_dlib_resnet_utkface --age_classes=utkface
set -eu
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/evidence_lopo}
DATA=${DATA:-data/fgnet_release_lopo}
BOX=${CHOSEN_BOX:-1}; EPOCHS=${CHOSEN_EPOCHS:-8}
LR_A=${CHOSEN_LR_A:-0.003}; LR_A2=${CHOSEN_LR_A2:-0.001}; LR_D2=${CHOSEN_LR_D2:-0.003}
. experiments/evidence_lib.sh
BASE="$BASE --data_dir=$DATA --epochs=$EPOCHS --lr_decay_epochs=$((EPOCHS / 2))"
train $OUT/a --stage=global_head --max_box_size=$BOX --learning_rate=$LR_A
train $OUT/a2 --stage=global_head --max_box_size=$BOX --learning_rate=$LR_A2 --init_checkpoint="$OUT/a/{fold}/model.keras"
train $OUT/d2 --stage=attention --max_box_size=$BOX --learning_rate=$LR_D2 --init_checkpoint="$OUT/a/{fold}/model.keras"
$PYTHON experiments/attention_evidence.py --data_dir=$DATA --reference=a2 --variant=a2=$OUT/a2 --variant=d2=$OUT/d2 \
  --chosen="on the 5-fold validation parts: box bound $BOX, $EPOCHS epochs, learning rates a $LR_A, a2 $LR_A2, d2 $LR_D2" \
  --translation_faces=8 --grid_variant=d2 --output=docs/results/attention/fgnet_evidence_lopo
