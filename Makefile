# Two commands on a fresh machine: `make run` and `make test`. Both install what they need
# into .venv first and are safe to repeat.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
# cpu: this machine, from the committed requirements/lock-cpu.txt. gpu: a CUDA machine, from
# requirements/lock-gpu.txt, which `make lock-gpu` writes there (see README, "Installing").
FLAVOUR ?= cpu
LOCK := requirements/lock-$(FLAVOUR).txt
STAMP := $(VENV)/.installed-$(FLAVOUR)
GPU_FLAG := $(if $(filter gpu,$(FLAVOUR)),--gpu,)
export KEDRO_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
# mkdocs-material 9.8 prints a banner about MkDocs 2 on every build.
export NO_MKDOCS_2_WARNING := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# pip warns about every local index it finds empty; the filter keeps the log readable while
# pipefail still stops on a failed install.
PIP := $(BIN)/python -m pip install -q
QUIET := 2>&1 | { grep -v "is ignored" || true; }
# uv lists every package it installs; keep its summary lines.
UV_QUIET := 2>&1 | { grep -vE "^ [-+~] " || true; }

.PHONY: install run test test-faults lint ui viz viz-build dvc docs docs-build docs-reference docs-screenshots results micro small clean help lock lock-gpu install-gpu

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

install: $(STAMP)  ## .venv exactly as requirements/lock-cpu.txt pins it (CPU torch, DeepSpeed, Kedro, MLflow, DVC, lmms-eval, Ray)

# uv, at the version the CPU lock pins, installs and locks (benchmarks/install_time.py: about
# 5x faster than pip from the same lock).
$(UV):
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PIP) "$$(grep -E '^uv==' requirements/lock-cpu.txt)" $(QUIET)

$(STAMP): $(LOCK) pyproject.toml requirements/uv-$(FLAVOUR).toml | $(UV)
	# A dependency changed in pyproject.toml without `make lock` stops here, naming it.
	$(BIN)/python tools/lock.py check $(GPU_FLAG)
	# torch and the build tools first: DeepSpeed's (and flash-attn's) setup.py imports torch,
	# so they build without isolation against the torch the lock pins. On CPU, --find-links is
	# where this machine's pip configuration finds the CPU torch wheel.
	$(UV) pip install --python $(BIN)/python --no-deps --compile-bytecode $$($(BIN)/python tools/lock.py find-links) \
		$$(grep -E '^(torch|setuptools|ninja|packaging|psutil)==' $(LOCK)) $(UV_QUIET)
	# --exact: packages the lock does not name are removed, so .venv is the tested environment.
	# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (CI containers) no process
	# caches its bytecode, and each of a run's trainer processes recompiled torch,
	# transformers and DeepSpeed: 20 s a start instead of 7 (benchmarks/startup_bytecode.py).
	$(UV) pip install --python $(BIN)/python --no-deps --exact --compile-bytecode \
		$$($(BIN)/python tools/lock.py find-links) $$($(BIN)/python tools/lock.py build-against-torch $(GPU_FLAG)) \
		-r $(LOCK) -e . $(UV_QUIET)
	$(BIN)/python tools/lock.py verify $(GPU_FLAG)
	$(BIN)/python -m compileall -q src
	$(BIN)/python -c "import lmms_eval.evaluator, sail_pipeline.pipeline_registry"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

lock: | $(UV)  ## recompile requirements/lock-cpu.txt from pyproject.toml (UPGRADE=1: newest allowed releases)
	$(BIN)/python tools/lock.py lock $(if $(UPGRADE),--upgrade,)

lock-gpu: | $(UV)  ## on a GPU machine: write requirements/lock-gpu.txt (CUDA torch, flash-attn)
	$(BIN)/python tools/lock.py lock --gpu $(if $(UPGRADE),--upgrade,)

install-gpu:  ## on a GPU machine: .venv from requirements/lock-gpu.txt
	$(MAKE) install FLAVOUR=gpu

run: install  ## the whole chain on the embedded default: kedro run, then its results tables (sail-report)
	$(BIN)/kedro run
	$(BIN)/sail-report

micro: install  ## the whole chain on the micro configuration, into data/micro (about a minute on 2 cores), then its tables
	$(BIN)/kedro run --env micro
	$(BIN)/sail-report --env micro

small: install  ## a smaller chain and a 30-point scaling sweep whose curves are not flat, into data/small (about 10 minutes on 2 cores), then the sweep's report
	$(BIN)/kedro run --env small
	$(BIN)/kedro run --env small --pipelines=scaling
	$(BIN)/sail-report --env small --page scaling

# The environment checks first, alone, so a broken install fails in seconds naming the module;
# then the rest on both cores (tests that share the end-to-end project stay on one worker).
# The slow fault tests are `make test-faults`; CI (.ci/run) runs both.
test: install  ## the test suite (includes end-to-end kedro and dvc runs), without the slow fault tests
	$(BIN)/python -m pytest -q -m environment
	$(BIN)/python -m pytest -m "not environment and not faults" -n 2 --dist loadgroup --durations=12

test-faults: install  ## the slow fault tests: SIGKILL at drawn points, a real full disk, rendezvous sockets, hostile inputs under a memory limit
	$(BIN)/python -m pytest -m faults -n 2 --dist loadgroup --durations=12

lint: install  ## ruff
	$(BIN)/ruff check src tests tools benchmarks

UI_PORT ?= 5000
ui: install  ## MLflow UI on http://127.0.0.1:5000 (UI_PORT=5001: another port)
	$(BIN)/mlflow ui --backend-store-uri "$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}" --host 127.0.0.1 --port $(UI_PORT)

viz: install  ## kedro-viz on http://127.0.0.1:4141: the pipelines, variants as collapsible namespaces
	$(BIN)/kedro viz run --host 127.0.0.1 --port 4141 --no-browser

# The micro environment defines two example variants, drawn as collapsible namespaces.
viz-build: install  ## the static kedro-viz page: docs/viz/index.html (serve: python -m http.server -d docs/viz)
	KEDRO_ENV=micro $(BIN)/kedro viz build --include-hooks
	rm -rf docs/viz && mv build docs/viz

dvc: install  ## rewrite dvc.yaml from the pipelines, the catalog and the import graph
	$(BIN)/python tools/dvc_stages.py

docs: install  ## the docs site on http://127.0.0.1:8000 (mkdocs, Material)
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:8000

docs-build: install  ## the docs site, built into site/ (--strict: any warning fails)
	$(BIN)/mkdocs build --strict

# RUN_ENV=micro reads the micro runs' data (data/micro); PAGES picks some of the pages.
PAGES ?= recipe quality scaling selection benchmarks
results: install  ## write the docs site's results pages from the runs' data in data/ (RUN_ENV=micro: data/micro; PAGES="scaling selection": some)
	$(BIN)/sail-report $(if $(RUN_ENV),--env $(RUN_ENV),) --page $(PAGES) --out docs/results
	# The README's results table and the site's index follow the recipe page.
	$(BIN)/python tools/docs_reference.py

docs-screenshots: docs-build  ## open the built site in headless Chromium (apt-get install chromium): pages render, with images and navigation; screenshots in docs/screenshots/
	$(BIN)/python tools/docs_screenshots.py --site site --out docs/screenshots

docs-reference: install  ## rewrite the docs site's reference pages from the code (parameters, catalog, CLI, make)
	$(BIN)/python tools/docs_reference.py

clean:  ## remove generated data, runs and the MLflow store (keeps .venv)
	rm -rf data mlflow.db mlruns
