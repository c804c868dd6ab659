#!/bin/sh
# The paper's order for the same comparison (BUILD_NOTES.md, "What the attention branch adds"):
# the global head is first fine-tuned on FG-NET (variant a of experiments/attention_evidence.sh,
# which must have run: its validation-chosen runs are this script's start), then, from that same
# network, at an equal extra budget:
#   a2  the global head fine-tuned for the same extra epochs  (--stage=global_head)
#   b2  a local head on a fixed box (d2's mean box; the whole map), no LSTM (--stage=local_head)
#   c2  the attention branch without memory                    (--noattention_memory)
#   d2  the attention LSTM branch                              (--stage=attention)
# Learning rates and d2's box bound are chosen on the held-out validation parts, starting from the
# validation runs of a; the test runs start from a's test runs, seed for seed. About 35 minutes.
set -eu
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/evidence}
LRS=${LRS:-"0.001 0.003 0.01 0.03"}
. experiments/evidence_lib.sh
start_val=$(dirname "$(pick $OUT/validation/a/*/results.json)")   # a's validation-chosen run
d_choice=$(basename "$(dirname "$(pick $OUT/validation/d/*/results.json)")")   # box<b>-e<e>-lr<lr>
e=${d_choice#*-e}; e=${e%%-*}
echo "start: $start_val/{fold}; extra epochs: $e"
val() { train "$@" --inner_validation --init_checkpoint="$start_val/{fold}/model.keras" --epochs=$e \
  --lr_decay_epochs=$((e / 2)); }

for lr in $LRS; do
  for box in 0.5 1; do
    val $OUT/validation/d2/box$box-lr$lr --stage=attention --max_box_size=$box --learning_rate=$lr
  done
done
d2=$(basename "$(dirname "$(pick $OUT/validation/d2/*/results.json)")")   # box<b>-lr<lr>
box=${d2%%-*}; box=${box#box}; lr_d=${d2#*-lr}
mean_box=$($PYTHON experiments/attention_evidence.py --print_mean_box=$OUT/validation/d2/$d2 --data_dir=data/fgnet_release)
echo "validation chose for d2: $d2; its mean box: $mean_box"
for lr in $LRS; do
  controls $OUT/validation 2 lr$lr $lr $lr $lr $lr --inner_validation --init_checkpoint="$start_val/{fold}/model.keras" \
    --epochs=$e --lr_decay_epochs=$((e / 2))
done
lr_a=$(chosen_lr $OUT/validation/a2); lr_bm=$(chosen_lr $OUT/validation/b2_mean)
lr_bw=$(chosen_lr $OUT/validation/b2_whole); lr_c=$(chosen_lr $OUT/validation/c2)
echo "validation chose learning rates: a2 $lr_a, b2_mean $lr_bm, b2_whole $lr_bw, c2 $lr_c, d2 $lr_d"

for seed in 0 1 2; do
  common="--init_checkpoint=$OUT/test/a/seed$seed/{fold}/model.keras --epochs=$e --lr_decay_epochs=$((e / 2)) --seed=$seed"
  controls $OUT/test 2 seed$seed $lr_a $lr_bm $lr_bw $lr_c $common
  train $OUT/test/d2/seed$seed --stage=attention $common --max_box_size=$box --learning_rate=$lr_d
done

$PYTHON experiments/attention_evidence.py --data_dir=data/fgnet_release --reference=a2 \
  --variant=a2=$OUT/test/a2 --variant=b2_mean=$OUT/test/b2_mean --variant=b2_whole=$OUT/test/b2_whole \
  --variant=c2=$OUT/test/c2 --variant=d2=$OUT/test/d2 --variant=a=$OUT/test/a \
  --chosen="start: a ($(basename "$start_val")); d2: $d2; a2: lr $lr_a; b2_mean: lr $lr_bm, box $mean_box; b2_whole: lr $lr_bw; c2: lr $lr_c; $e extra epochs" \
  --validation_dir=$OUT/validation --lever_variants=d2,c2 --grid_variant=d2 --local_weight_of=d2=$OUT/validation/d2/$d2 --output=docs/results/attention/fgnet_evidence_after_global
