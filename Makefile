# Two commands for a newcomer:  `make run` (install + the whole pipeline)  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
SHARED ?= ../shared
DATA   ?= $(SHARED)/data/dogs-vs-cats/train
OUT    ?= runs/mobilenet_v2_288
SIZE   ?= 288
BIN    := $(VENV)/bin
# Keras looks for weights in $KERAS_HOME/models before downloading; seed it from ../shared.
export KERAS_HOME ?= $(CURDIR)/.cache/keras

.PHONY: install run test browser keras-cache bench clean

$(BIN)/catdog: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,ray]"
	touch $@

install: $(BIN)/catdog keras-cache

keras-cache:
	@mkdir -p $(KERAS_HOME)/models
	@if [ -d $(SHARED)/weights/keras/models ]; then cp -u $(SHARED)/weights/keras/models/*.h5 $(KERAS_HOME)/models/; \
	 else echo "note: $(SHARED)/weights not found; Keras will download ImageNet weights on first use"; fi

run: install
	$(BIN)/catdog run $(DATA) --backbone mobilenet_v2 --image-size $(SIZE) --out $(OUT) --cv 5

test: install browser
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Debian's Chromium for the end-to-end test of `catdog serve` (skipped, with the reason, without it).
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); } || \
	  echo "note: chromium not installed; the browser test will be skipped"

bench: install
	$(BIN)/python -m bench all

clean:
	rm -rf $(VENV) .cache runs *.egg-info
