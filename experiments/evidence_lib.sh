# Shared by experiments/attention_evidence*.sh (sourced): training that skips finished runs, the
# validation pick, and the four controls of the attention branch.
BASE=--flagfile=configs/evidence/evidence_fgnet.flags

train() {  # train <run folder> <flags>: skipped once the run has written its results
  dir=$1; shift
  [ -f "$dir/results.json" ] || $PYTHON scripts/train.py $BASE --run_dir="$dir" "$@" > /dev/null
}

pick() {  # pick <results.json ...>: the one with the lowest mean combined MAE over folds
  $PYTHON experiments/pick_run.py --metric=aggregate.combined.mae.mean "$@"
}

chosen_lr() {  # chosen_lr <variant folder>: the learning rate of its validation-chosen lr<rate>/ run
  basename "$(dirname "$(pick "$1"/*/results.json)")" | sed 's/^lr//'
}

controls() {  # controls <root> <suffix> <leaf> <lr a> <lr b mean> <lr b whole> <lr c> <flags>
  # a (global head), b (local head on $mean_box; on the whole map), c (no memory), box bound $box,
  # into <root>/a<suffix>/<leaf>, <root>/b<suffix>_mean/<leaf>, ...
  _root=$1; _suffix=$2; _leaf=$3; _lr_a=$4; _lr_bm=$5; _lr_bw=$6; _lr_c=$7; shift 7
  train $_root/a$_suffix/$_leaf --stage=global_head "$@" --max_box_size=$box --learning_rate=$_lr_a
  train $_root/b${_suffix}_mean/$_leaf --stage=local_head "$@" --max_box_size=$box --fixed_box="$mean_box" \
    --learning_rate=$_lr_bm
  train $_root/b${_suffix}_whole/$_leaf --stage=local_head "$@" --max_box_size=1 --fixed_box=whole \
    --learning_rate=$_lr_bw
  train $_root/c$_suffix/$_leaf --stage=attention "$@" --max_box_size=$box --noattention_memory \
    --learning_rate=$_lr_c
}
