#!/bin/sh
# The released model end to end (BUILD_NOTES.md "The released model", MODEL_CARD.md):
#   1. the start, chosen at equal budget: one epoch of the release recipe from random weights
#      and one from dlib's CC0 age network (backbone imported, heads new), same split and flags;
#      the lower held-out MAE goes on;
#   2. the winner continues to 8 epochs (the rerun resumes after its first);
#   3. the attention stage on it (2 epochs);
#   4. held-out errors overall, per gender, race label and source folder (200 px / 64 px chips);
#   5. the release folder models/al_resnet18_utkface (fp16 weights, model.json).
# About 2 hours on 2 cores. Every training step resumes when rerun.
#   make release        (builds data/utkface_all first)
set -eu
PYTHON=${PYTHON:-.venv/bin/python}
OUT=runs/release
start_flags() { if [ "$1" = dlib ]; then echo "--init_dlib_age=installed --nodlib_heads"; fi; }
for start in scratch dlib; do
  # shellcheck disable=SC2046
  $PYTHON scripts/train.py --flagfile=release_utkface_global.flags --run_dir=$OUT/global_$start --epochs=1 \
    $(start_flags $start)
done
winner=$($PYTHON scripts/pick_run.py --metric=global.mae $OUT/global_scratch/evaluation.json $OUT/global_dlib/evaluation.json)
start=$(basename "$(dirname "$winner")" | sed 's/^global_//')
echo "start chosen at equal budget: $start"
# shellcheck disable=SC2046
$PYTHON scripts/train.py --flagfile=release_utkface_global.flags --run_dir=$OUT/global_$start $(start_flags $start)
ln -sfn "global_$start" $OUT/global
$PYTHON scripts/train.py --flagfile=release_utkface_attention.flags
$PYTHON scripts/evaluate.py --data_dir=data/utkface_all --run_dir=$OUT/attention --output_dir=$OUT/attention/held_out \
  --group_by=gender,race,folder --group_head=combined --batch_size=64
$PYTHON scripts/release_model.py --run_dir=$OUT/attention --output=models/al_resnet18_utkface --crop_margin=0.04 \
  --provenance=configs/release_provenance.json
