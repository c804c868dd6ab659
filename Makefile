# The two commands of the README: `make quickstart` (the main job, end to end) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

SHARED_DATA ?= ../shared/data

.PHONY: quickstart experiment demo test install clean

$(STAMP): setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,hub,data,serving]"
	touch $(STAMP)

install: $(STAMP)

# FG-NET photos -> MTCNN face crops -> subject-exclusive 5-fold TFRecords (about 3 min on 2 cores).
data/fgnet/manifest.json: | $(STAMP)
	$(BIN)/python scripts/build_tfrecords.py --dataset=fgnet --data_dir=$(SHARED_DATA)/fgnet \
		--output_dir=data/fgnet --overwrite

# UTKFace part 1 face crops -> random 90/10 TFRecords (no detection needed; about 30 s).
data/utkface/manifest.json: | $(STAMP)
	$(BIN)/python scripts/build_tfrecords.py --dataset=utkface --data_dir=$(SHARED_DATA)/utkface/crop_part1 \
		--output_dir=data/utkface --overwrite

# FG-NET cut like UTKFace's aligned chips, for models pretrained on them: the face box is 0.96
# of a chip's side (scripts/measure_crop_margin.py), so margin 0.04 instead of 0.4.
data/fgnet_chip/manifest.json: | $(STAMP)
	$(BIN)/python scripts/build_tfrecords.py --dataset=fgnet --data_dir=$(SHARED_DATA)/fgnet \
		--output_dir=data/fgnet_chip --crop_margin=0.04 --overwrite

# The CPU-scale experiment (experiments/cpu_fgnet.sh): about 2 hours 40 minutes on 2 cores.
experiment: data/utkface/manifest.json data/fgnet_chip/manifest.json
	PYTHON=$(BIN)/python sh experiments/cpu_fgnet.sh

# Build, train (configs/quickstart_fgnet.flags; a rerun resumes) and evaluate with ten-crop.
quickstart: data/fgnet/manifest.json
	$(BIN)/python scripts/train.py --flagfile=quickstart_fgnet.flags $(ARGS)
	$(BIN)/python scripts/evaluate.py --data_dir=data/fgnet --fold=fold0 --run_dir=runs/quickstart_fgnet

demo: $(STAMP)
	$(BIN)/python scripts/demo.py $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
