# Every target bootstraps what it needs: uv (if missing), then the venv from uv.lock.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := python3 -m uv
endif
RUN := $(UV) run --frozen
CODE := api worker shared

.PHONY: help bootstrap run api worker aws-local test test-unit test-integration test-e2e lint format bench clean dev diagrams

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

.venv/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || { echo "installing uv with pip" >&2; \
	  python3 -m pip install --quiet --user uv 2>/dev/null \
	  || python3 -m pip install --quiet --user --break-system-packages uv \
	  || python3 -m pip install --quiet uv; }
	$(UV) sync --frozen
	@touch $@

bootstrap: .venv/.synced  ## create the venv from uv.lock

dev: bootstrap  ## set up development: venv with dev deps, .env, the ruff pre-commit hook
	@UV="$(UV)" scripts/dev-setup

run: bootstrap  ## serve the embedded service on http://127.0.0.1:8000 (no config needed)
	$(RUN) python -m api

api: bootstrap  ## run the API alone (uses REDIS_URL / *_BACKEND from the environment)
	$(RUN) python -m api

worker: bootstrap  ## run one arq worker (needs REDIS_URL)
	$(RUN) python -m worker

test: bootstrap  ## lint, then every test tier (starts its own Redis and stub servers), with coverage
	$(MAKE) --no-print-directory lint
	$(RUN) pytest -q -p no:cacheprovider --cov --cov-report=

test-unit: bootstrap
	$(RUN) pytest -q tests/unit

test-integration: bootstrap
	$(RUN) pytest -q tests/contract tests/integration

test-e2e: bootstrap
	$(RUN) pytest -q tests/e2e

lint: bootstrap  ## ruff (lint + format check) and mypy on api worker shared tests
	$(RUN) ruff check $(CODE) tests bench
	$(RUN) ruff format --check $(CODE) tests bench
	$(RUN) mypy $(CODE) tests

format: bootstrap
	$(RUN) ruff check --fix $(CODE) tests bench
	$(RUN) ruff format $(CODE) tests bench

aws-local: bootstrap  ## the AWS layout (DynamoDB, SQS, Secrets Manager) on moto: API + SQS worker
	$(RUN) python -m shared.adapters.aws.local

# Graphviz's `dot` renders the diagrams. The PyPI wheel graphviz-pure (a `dot` port in one binary)
# lays the graphs out but draws no node images into PNGs, so every icon would be missing; the target
# installs the distribution's package instead when `dot` is absent: Debian's `graphviz` with
# apt-get (as root, else through sudo). Elsewhere install Graphviz first (brew install graphviz).
diagrams: bootstrap  ## draw docs/asset/*.png from docs/diagrams/ (installs Graphviz if missing)
	@command -v dot >/dev/null || { \
	  command -v apt-get >/dev/null || { echo "install Graphviz (dot) first" >&2; exit 1; }; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$sudo apt-get install -y -qq graphviz >/dev/null \
	  || { $$sudo apt-get update -qq && $$sudo apt-get install -y -qq graphviz >/dev/null; }; }
	$(RUN) python docs/diagrams/generate_diagrams.py

bench: bootstrap  ## the service against bare FastAPI and bare arq, same run (docs/PERFORMANCE.md)
	$(RUN) python -m bench

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache data
