#!/bin/sh
# What the attention branch adds, with every choice made on validation data (BUILD_NOTES.md, "What
# the attention branch adds"; docs/results/attention/fgnet_evidence.*). From the released model, on FG-NET's
# 5-fold build cut as it expects, five variants at an equal budget (same folds, start, epochs, data):
#   a  the global head fine-tuned on the frozen network      (--stage=global_head)
#   b  a local head on a fixed box, no LSTM: the mean box of d, and the whole map (--stage=local_head)
#   c  the attention branch without memory                    (--noattention_memory)
#   d  the attention LSTM branch, as the paper                (--stage=attention)
# 1. d's learning rate, epochs and box bound on held-out training parts (--inner_validation);
# 2. each control's learning rate at d's epochs, likewise; 3. every variant once on the test folds,
# three seeds; 4. the evidence: per-fold MAE per head, paired differences to a with subject-bootstrap
# intervals, the box study. Every run resumes when rerun. About 45 minutes on 2 cores.
#   make evidence
set -eu
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/evidence}
LRS=${LRS:-"0.001 0.003 0.01 0.03"}
EPOCHS=${EPOCHS:-"2 4 8"}
. experiments/evidence_lib.sh

for box in 0.5 1; do
  for e in $EPOCHS; do
    for lr in $LRS; do
      train $OUT/validation/d/box$box-e$e-lr$lr --stage=attention --inner_validation --max_box_size=$box \
        --epochs=$e --lr_decay_epochs=$((e / 2)) --learning_rate=$lr
    done
  done
done
best=$(pick $OUT/validation/d/*/results.json)
name=$(basename "$(dirname "$best")")   # box<b>-e<e>-lr<lr>
box=${name%%-*}; box=${box#box}; rest=${name#*-}; e=${rest%%-*}; e=${e#e}
echo "validation chose for d: $name"
mean_box=$($PYTHON experiments/attention_evidence.py --print_mean_box="$(dirname "$best")" --data_dir=data/fgnet_release)
echo "d's mean box on the validation parts: $mean_box"

for lr in $LRS; do
  controls $OUT/validation "" lr$lr $lr $lr $lr $lr --inner_validation --epochs=$e --lr_decay_epochs=$((e / 2))
done
lr_d=${name##*-lr}; lr_a=$(chosen_lr $OUT/validation/a); lr_bm=$(chosen_lr $OUT/validation/b_mean)
lr_bw=$(chosen_lr $OUT/validation/b_whole); lr_c=$(chosen_lr $OUT/validation/c)
echo "validation chose learning rates: a $lr_a, b_mean $lr_bm, b_whole $lr_bw, c $lr_c, d $lr_d"

for seed in 0 1 2; do
  common="--epochs=$e --lr_decay_epochs=$((e / 2)) --seed=$seed"
  controls $OUT/test "" seed$seed $lr_a $lr_bm $lr_bw $lr_c $common
  train $OUT/test/d/seed$seed --stage=attention $common --max_box_size=$box --learning_rate=$lr_d
done

$PYTHON experiments/attention_evidence.py --data_dir=data/fgnet_release --reference=a \
  --variant=a=$OUT/test/a --variant=b_mean=$OUT/test/b_mean --variant=b_whole=$OUT/test/b_whole \
  --variant=c=$OUT/test/c --variant=d=$OUT/test/d \
  --chosen="d: $name; a: lr $lr_a; b_mean: lr $lr_bm, box $mean_box; b_whole: lr $lr_bw; c: lr $lr_c" \
  --validation_dir=$OUT/validation --output=docs/results/attention/fgnet_evidence
