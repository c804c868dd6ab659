#!/bin/sh
# The released model, v3.1 (BUILD_NOTES.md "The released model, v3.1" and "v3", MODEL_CARD.md):
# v2's AL-dlib-ResNet (dlib's CC0 age network imported exactly and frozen as backbone and global
# head) with its attention branch chosen among eight variants (experiments/release_v3_choices.sh:
# with and without old-photo augmentation, distillation from the global head at 0, 1, 3 and 10),
# its evaluation crops (the centre; the centre and its mirror; or the centre shifted 2 px four
# ways, all mirrored) and its local weight, all on the mean combined MAE over two views of the
# UTKFace held-out split: as built, and as fixed old scanned prints. The local weight is then
# chosen again with FG-NET's subject folds as a third view (a second population), after a nested
# estimate of that choice.
# It then records the release's own age prior (predict.py --adapt_prior).
# About 55 minutes on 2 cores after `make data/utkface_dlib`.
#   make release
set -eu
PYTHON=${PYTHON:-.venv/bin/python}
ROOT=${ROOT:-runs/release_v3}
RELEASE=${RELEASE:-models/al_dlib_resnet_utkface}
ROOT=$ROOT PYTHON=$PYTHON sh experiments/release_v3_choices.sh
set -- $($PYTHON experiments/choose_release.py --output=docs/results/releases/release_v3_choices \
  --crops=center,center_flip,shift_flip \
  $ROOT/base $ROOT/old_photo $ROOT/distill1 $ROOT/old_photo_distill1 $ROOT/distill3 $ROOT/old_photo_distill3 \
  $ROOT/distill10 $ROOT/old_photo_distill10)
RUN=$1 CROPS=$3
SUFFIX=$([ "$CROPS" = center ] && echo "" || echo "_$CROPS")
VIEWS="$RUN/held_out_as_built$SUFFIX/results.json,$RUN/held_out_old_photo$SUFFIX/results.json"
$PYTHON experiments/release_model.py --run_dir="$RUN" --output="$RELEASE" --detector=dlib --crop_margin=0.6 \
  --crops="$CROPS" --local_weight_from="$VIEWS" \
  --provenance=configs/releases/release_dlib_provenance.json --probe_build=data/utkface_dlib
# The local weight on two populations: those two views and FG-NET's five subject folds, cut with the
# release's crop. The benchmark first estimates, nested, what that choice gives on people it did not
# see (docs/results/releases/local_weight_populations.md); the release then takes the weight chosen on all.
${MAKE:-make} data/fgnet_release/manifest.json
$PYTHON benchmarks/local_weight_populations.py --model="$RELEASE" --views="$VIEWS" > /dev/null
$PYTHON experiments/release_model.py --run_dir="$RUN" --output="$RELEASE" --detector=dlib --crop_margin=0.6 \
  --crops="$CROPS" --local_weight_from="$VIEWS,docs/results/releases/local_weight_populations.json" \
  --provenance=configs/releases/release_dlib_provenance.json --probe_build=data/utkface_dlib
# Its own age prior on its training faces, for predict.py --adapt_prior, with the smoothing chosen on
# held-out faces resampled to other age mixes (benchmarks/prior_shift.py).
$PYTHON benchmarks/prior_shift.py --model="$RELEASE" > /dev/null
$PYTHON experiments/record_prior.py --model="$RELEASE" --data_dir=data/utkface_dlib \
  --smoothing_from=docs/results/releases/prior_shift.json
# The model card's breakdowns, by the released model itself (fp16 weights, its recorded weight).
for view in as_built old_photo; do
  $PYTHON scripts/evaluate.py --data_dir=data/utkface_dlib --model="$RELEASE" --crops="$CROPS" --batch_size=64 \
    --eval_view=$view --group_by=gender,race,folder --output_dir="$ROOT/release_held_out_$view$SUFFIX" > /dev/null
done
