#!/bin/sh
# Release v3 choices (BUILD_NOTES.md "The released model, v3"): the attention branch of the v2
# recipe (configs/release_dlib_attention.flags) trained with and without old-photo augmentation
# (--old_photo_augment) and with the frozen global head teaching the local head
# (--distill_weight), each evaluated on the UTKFace held-out split twice: as built and as fixed
# old scanned prints (--eval_view=old_photo, a shifted population made without FG-NET).
# Each is scored with the centre crop and with the centre and its mirror (--crops=center_flip).
# scripts/choose_release.py then picks the variant, crops and local weight of the lowest mean MAE
# over the two views. About 35 minutes on 2 cores after `make data/utkface_dlib`.
set -eu
PYTHON=${PYTHON:-.venv/bin/python}
ROOT=${ROOT:-runs/release_v3}

variant() {  # variant <name> <flags>: train (resumable) and evaluate on both views
  name=$1; shift
  dir=$ROOT/$name
  [ -f "$dir/results.json" ] || $PYTHON scripts/train.py --flagfile=configs/release_dlib_attention.flags \
    --run_dir="$dir" --eval_crops=center "$@" > "$ROOT/$name.log" 2>&1
  for view in as_built old_photo; do
    [ -f "$dir/held_out_$view/results.json" ] || $PYTHON scripts/evaluate.py --data_dir=data/utkface_dlib \
      --run_dir="$dir" --crops=center --batch_size=64 --local_weights=0,0.1,0.25,0.5,1,2,4 --eval_view=$view \
      --output_dir="$dir/held_out_$view" > /dev/null
    [ -f "$dir/held_out_${view}_center_flip/results.json" ] || $PYTHON scripts/evaluate.py \
      --data_dir=data/utkface_dlib --run_dir="$dir" --crops=center_flip --batch_size=64 \
      --local_weights=0,0.1,0.25,0.5,1,2,4 --eval_view=$view --output_dir="$dir/held_out_${view}_center_flip" > /dev/null
  done
}

mkdir -p "$ROOT"
variant base
variant old_photo --old_photo_augment=0.5
variant distill1 --distill_weight=1
variant old_photo_distill1 --old_photo_augment=0.5 --distill_weight=1
variant distill3 --distill_weight=3
variant old_photo_distill3 --old_photo_augment=0.5 --distill_weight=3
variant distill10 --distill_weight=10
variant old_photo_distill10 --old_photo_augment=0.5 --distill_weight=10
