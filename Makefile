# qconvert developer entry points. `make setup` then `make demo`; `make test` for the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PLUGINS := $(sort $(wildcard plugins/*/pyproject.toml))
DEMO_OUT ?= OUT/digits

.PHONY: setup demo test test-all schema bench zoo lint clean

setup:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "qconvert needs Python >= 3.11")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel
	# torch first and pinned, so pip takes the local CPU build and never a CUDA one.
	$(BIN)/pip install --quiet torch==2.13.0
	# The packages declare ranges; constraints.txt pins the versions development and CI use.
	$(BIN)/pip install --quiet -c constraints.txt -e ".[build,dev]" $(foreach p,$(PLUGINS),-e "$(patsubst %/,%,$(dir $(p)))[build]")
	$(BIN)/qconvert targets
	# Headless Chromium renders report.html in a test; without it (not root, no apt) that test is skipped.
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || echo "chromium not installed: the report.html screenshot test will be skipped"

demo:
	@$(BIN)/qconvert build \
	  --model samples/digits/model.py:build --weights samples/digits/weights.pt \
	  --recipe samples/digits/recipe.yaml \
	  --calib-data samples/digits/calib.npz --eval-data samples/digits/eval.npz \
	  $$($(BIN)/qconvert targets --available --names | sed 's/^/--target /') \
	  --out $(DEMO_OUT)

test:
	$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test-all:
	$(BIN)/python -m pytest -q -m "" ; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

schema:
	$(BIN)/qconvert recipe schema > schemas/recipe.schema.json
	$(BIN)/qconvert report schema > schemas/report.schema.json
	$(BIN)/qconvert report manifest-schema > schemas/manifest.schema.json

bench:
	$(BIN)/python -m bench

# Every zoo model (zoo/) for every available target, one table (OUT/zoo/table.md); ZOO_ARGS="--models resnet --targets onnx"
zoo:
	$(BIN)/python -m zoo $(ZOO_ARGS)

# ruff, then mypy over the core and the plugin packages (pyproject [tool.mypy]), then each plugin's tests on their
# own (every plugins/<name>/tests has its own conftest.py; MYPYPATH lets them import their helper modules).
lint:
	$(BIN)/ruff check qconvert plugins tests zoo
	$(BIN)/mypy
	@for t in plugins/*/tests; do echo "mypy $$t"; MYPYPATH=$$t $(BIN)/mypy $$t || exit 1; done

clean:
	rm -rf OUT .pytest_cache
