# Two commands on a fresh machine: `make run` and `make test`. Both install what they need
# into .venv first and are safe to repeat.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RAY_STAMP := $(VENV)/.installed-ray
export KEDRO_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# pip warns about every local index it finds empty; the filter keeps the log readable while
# pipefail still stops on a failed install.
PIP := $(BIN)/python -m pip install -q
QUIET := 2>&1 | { grep -v "is ignored" || true; }

.PHONY: install run test lint ui micro clean help

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

install: $(STAMP)  ## create .venv with CPU torch, DeepSpeed, Kedro, MLflow, DVC, lmms-eval

$(STAMP): pyproject.toml requirements/lmms-eval-cpu.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	# CPU torch first: any later requirement it already satisfies installs nothing more.
	$(PIP) "torch==2.13.0" $(QUIET)
	$(BIN)/python -c "import torch; assert '+cu' not in torch.__version__, torch.__version__"
	# DeepSpeed builds against the installed torch, not one of its own.
	$(PIP) --no-build-isolation "deepspeed>=0.16,<1" $(QUIET)
	$(PIP) -e ".[dev]" $(QUIET)
	# lmms-eval without its declared torchvision (see requirements/lmms-eval-cpu.txt).
	$(PIP) --no-deps $$(grep -E '^lmms-eval' requirements/lmms-eval-cpu.txt) $(QUIET)
	$(PIP) $$(grep -vE '^(#|lmms-eval|$$)' requirements/lmms-eval-cpu.txt) $(QUIET)
	$(BIN)/python -c "import lmms_eval.evaluator, sail_pipeline.pipeline_registry"
	touch $(STAMP)

run: install  ## the whole chain on the embedded default: kedro run
	$(BIN)/kedro run

micro: install  ## the whole chain on the micro configuration (about 3 minutes)
	$(BIN)/kedro run --env micro

# Ray (the optional `ray` extra) only for the tests: tests/test_executors.py compares the Ray
# executor with the plain one, and `make run` stays without it.
$(RAY_STAMP): $(STAMP)
	$(PIP) -e ".[ray]" $(QUIET)
	$(BIN)/python -c "import ray.data"
	touch $(RAY_STAMP)

test: install $(RAY_STAMP)  ## the test suite (includes one end-to-end kedro run)
	$(BIN)/python -m pytest

lint: install  ## ruff
	$(BIN)/ruff check src tests

ui: install  ## MLflow UI on http://127.0.0.1:5000
	$(BIN)/mlflow ui --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}" --host 127.0.0.1 --port 5000

clean:  ## remove generated data, runs and the MLflow store (keeps .venv)
	rm -rf data mlflow.db mlruns
