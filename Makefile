# `make demo` and `make test` work on a fresh clone: the first target run builds .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DETECT := $(BIN)/detect

.PHONY: install lock check test lint proto demo demo-model demo-int8 bench-train study bench-predict bench-serve clean

# .venv holds exactly what requirements.lock lists (every package of the train, serve, openvino,
# eval, ray, ui and dev extras, exact versions and hashes), then this checkout itself, editable and with no deps.
# `pip check` may name one gap: opencv-python, which trackeval declares, is left out of the lock
# on purpose (opencv-python-headless provides cv2; two cv2 distributions would overwrite each other).
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		-r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/pip check > $(VENV)/pip-check.txt \
		|| ! grep -v '^trackeval [0-9.]* requires opencv-python, which is not installed.$$' \
		$(VENV)/pip-check.txt
	touch $@

install: $(VENV)/.installed

# Re-resolve requirements.lock from pyproject.toml's ranges for CPython 3.11 on Linux x86-64
# (glibc 2.28+), keeping every pin that still fits; UPGRADE=1 moves each to its newest version.
UV_VERSION := 0.13.9
LOCK_TOOLS := runs/lock-tools
lock:
	test -x $(LOCK_TOOLS)/bin/uv || ($(PYTHON) -m venv $(LOCK_TOOLS) \
		&& $(LOCK_TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION))
	$(LOCK_TOOLS)/bin/uv pip compile pyproject.toml --extra train --extra serve --extra openvino --extra eval \
		--extra ray --extra ui --extra dev --no-emit-package opencv-python \
		--generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
		--custom-compile-command "make lock" --quiet $(if $(UPGRADE),--upgrade) -o requirements.lock

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The everyday loop: lint and every test not marked slow (under 3 minutes once the tiny fixture
# models are cached; they retrain only when the model, data or training code or the lock change).
check: lint
	$(BIN)/pytest -m "not slow" -q

# The whole suite (CI).
test: lint
	$(BIN)/pytest --durations=20

# Python stubs of the gRPC API, committed; tests/test_proto.py fails when they are stale.
proto: install
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. \
		proto/detect/v1/detector.proto

# The serving path end to end with the committed demo model (see README, Quick start).
demo: install
	$(DETECT) demo --out runs/demo

# Rebuild models/demo.onnx + models/demo.json from scratch on this machine's CPU (about 2 h 10 min
# on 2 cores): synthetic data, the recipe in models/demo.yaml, export with a parity check and
# the default score threshold chosen on the validation split (models/README.md).
demo-model: install
	rm -rf runs/demo-model && mkdir -p runs/demo-model/verify
	cd runs/demo-model && ../../$(DETECT) synth --out data --images 4000 --size 256 --seed 0
	cd runs/demo-model && ../../$(DETECT) split data/annotations.json --ratios 0.9 0.05 0.05 --seed 0
	cd runs/demo-model && ../../$(DETECT) train --config ../../models/demo.yaml \
		--data data/train.json --val data/val.json --test data/test.json --out train
	cp runs/demo-model/data/images/00000[0-7].jpg runs/demo-model/verify/
	$(DETECT) export --checkpoint runs/demo-model/train/best.pt --out models/demo.onnx \
		--score 0.7 --verify runs/demo-model/verify

# Rebuild models/demo.int8.onnx + models/demo.int8.json, the int8 model of models/demo.onnx that
# serve, video and watch run on a CPU: calibrated on 64 of its own training images (seed 0), its
# box/mask AP on 200 images it never saw (`detect demo`'s test seed) against fp32's on every
# installed engine, refused if it loses more than 1 AP point (about 75 s on 2 cores).
demo-int8: install
	rm -rf runs/demo-int8
	$(DETECT) synth --out runs/demo-int8/calibration --images 64 --size 256 --seed 0
	$(DETECT) synth --out runs/demo-int8/held-out --images 200 --size 256 --seed 1
	$(DETECT) export --model models/demo.onnx --int8 runs/demo-int8/calibration/images \
		--int8-val runs/demo-int8/held-out/annotations.json

# Box/mask AP against minutes of training for the default recipe from scratch, on held-out
# synthetic shapes (benchmarks/train_quality.py). PRESET=cpu: the demo model's sizes, no BN
# (3 h on 2 cores); PRESET=gpu: R50-FPN Mask R-CNN, batch 16, AMP (10 min). DEVICE=cuda picks gpu;
# MINUTES overrides the preset's budget (MINUTES=10 for a CPU smoke run).
DEVICE ?= auto
PRESET ?= $(if $(filter cuda,$(DEVICE)),gpu,cpu)
MINUTES ?=
bench-train: install
	$(BIN)/python benchmarks/train_quality.py --preset $(PRESET) --device $(DEVICE) \
		$(if $(MINUTES),--minutes $(MINUTES)) --out runs/bench-train

# The one-factor-at-a-time recipe study behind the default recipe (models/README.md): 14 runs
# of 15 minutes, two at a time with one thread each (about 2 h on 2 cores).
study: install
	$(BIN)/python benchmarks/recipe_study.py --out runs/recipe-study

clean:
	rm -rf runs .pytest_cache .ruff_cache

# Runtime latency on this machine: torch eager vs ONNX Runtime and OpenVINO in fp32 and int8,
# same weights and images (fp16 is for GPUs: benchmarks/gpu_speed.py). Random weights for R50-FPN
# and MobileNetV3-FPN Mask R-CNN, parity against eager beside each; the demo model with box/mask
# AP on 100 held-out images (int8 calibrated on 64 images of its own training data): with eager
# when its checkpoint is here (DEMO_CHECKPOINT, which `make demo-model` writes), otherwise the
# committed models/demo.onnx alone; and the cost of the two mask output layouts. About 25 min.
DEMO_CHECKPOINT ?= runs/demo-model/train/best.pt
bench-predict: install
	rm -rf runs/bench-predict
	$(DETECT) synth --out runs/bench-predict/data --images 20 --size 480 --seed 3
	$(DETECT) synth --out runs/bench-predict/demo-calib --images 64 --size 256 --seed 0
	$(DETECT) synth --out runs/bench-predict/demo-test --images 100 --size 256 --seed 999
	$(BIN)/python benchmarks/predict_latency.py runs/bench-predict/data/images --backbone resnet50_fpn \
		--precisions fp32,int8
	$(BIN)/python benchmarks/predict_latency.py runs/bench-predict/data/images --backbone mobilenet_v3_fpn \
		--precisions fp32,int8
	$(BIN)/python benchmarks/predict_latency.py runs/bench-predict/demo-calib/images \
		$(if $(wildcard $(DEMO_CHECKPOINT)),--checkpoint $(DEMO_CHECKPOINT),--model models/demo.onnx) \
		--gt runs/bench-predict/demo-test/annotations.json --precisions fp32,int8
	$(BIN)/python benchmarks/mask_output.py runs/bench-predict/data/images --size 640x480

# `detect serve` + `detect bench --compare-eager` for R50-FPN and MobileNetV3-FPN Mask R-CNN on
# this machine (random weights made to behave like trained ones; DEVICE=cuda on a GPU), each
# on ONNX Runtime without and with batch graphs of 2, 4 and 8 images: img/s before and after real
# batching (OpenVINO runs images one at a time).
DURATION ?= 20
bench-serve: install
	rm -rf runs/bench-serve
	$(DETECT) synth --out runs/bench-serve/data --images 20 --size 480 --seed 3
	$(BIN)/python benchmarks/serve_latency.py runs/bench-serve/data/images --backbone resnet50_fpn \
		--device $(DEVICE) --backend onnxruntime --duration $(DURATION) --batch-sizes 2,4,8
	$(BIN)/python benchmarks/serve_latency.py runs/bench-serve/data/images \
		--backbone mobilenet_v3_fpn --device $(DEVICE) --backend onnxruntime --duration $(DURATION) --batch-sizes 2,4,8
