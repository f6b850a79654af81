# The two commands of the README: `make demo` and `make test`. Both build .venv when missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Demo and test state lives in the repository folder (ignored by git), never in ~/.qc.
export QC_HOME ?= $(CURDIR)/.qc

.PHONY: demo test test-fast install clean-demo lint

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	@# The serving pins (docker/constraints.txt) hold here too: the tests run on what the images ship.
	$(BIN)/pip install --quiet -c docker/constraints.txt -e ".[cpu,serve,train,label,dev]"
	@# Ultralytics requires opencv-python, albumentations opencv-python-headless; both write the
	@# same cv2/ folder, so keep headless alone (no GUI libraries) and reinstall it whole.
	$(BIN)/pip uninstall --quiet -y opencv-python
	$(BIN)/pip install --quiet --no-deps --force-reinstall \
	    "opencv-python-headless==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("opencv-python-headless"))')"
	@# Ultralytics through training.ultralytics_env: its settings land under QC_HOME, not ~/.config.
	$(BIN)/python -c "import cv2, onnxruntime; from training.ultralytics_env import load_ultralytics; \
	    load_ultralytics(); print('cv2', cv2.__version__)"
	touch $@

demo: install
	$(BIN)/python scripts/demo.py

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

# Style and bugs (ruff), types (mypy: inspection, serving, training, agent), the layout's import rules
# (lint-imports, contracts in pyproject.toml). A few seconds with mypy's cache warm.
lint: install
	$(BIN)/ruff check inspection serving training qc tests bench agent labeling scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

clean-demo:
	rm -rf "$(QC_HOME)/demo" "$(QC_HOME)/models/demo"
