#!/bin/sh
# Release v3 choices (BUILD_NOTES.md "The released model, v3"): the attention branch of the v2
# recipe (configs/releases/release_dlib_attention.flags) trained with and without old-photo augmentation
# (--old_photo_augment) and with the frozen global head teaching the local head
# (--distill_weight), each evaluated on the UTKFace held-out split twice: as built and as fixed
# old scanned prints (--eval_view=old_photo, a shifted population made without FG-NET).
# Each is scored with the centre crop, the centre and its mirror (--crops=center_flip), and the
# centre shifted 2 px four ways with all five mirrored (--crops=shift_flip).
# experiments/choose_release.py then picks the variant, crops and local weight of the lowest mean MAE
# over the two views. About 45 minutes on 2 cores after `make data/utkface_dlib`.
set -eu
PYTHON=${PYTHON:-.venv/bin/python}
ROOT=${ROOT:-runs/release_v3}

variant() {  # variant <name> <flags>: train (resumable) and evaluate on both views
  name=$1; shift
  dir=$ROOT/$name
  [ -f "$dir/results.json" ] || $PYTHON scripts/train.py --flagfile=configs/releases/release_dlib_attention.flags \
    --run_dir="$dir" --eval_crops=center "$@" > "$ROOT/$name.log" 2>&1
  for crops in center center_flip shift_flip; do
    for view in as_built old_photo; do
      out=$dir/held_out_$view$([ $crops = center ] || echo "_$crops")
      [ -f "$out/results.json" ] || $PYTHON scripts/evaluate.py --data_dir=data/utkface_dlib --run_dir="$dir" \
        --crops=$crops --batch_size=64 --local_weights=0,0.1,0.25,0.5,1,2,4 --eval_view=$view \
        --output_dir="$out" > /dev/null
    done
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
