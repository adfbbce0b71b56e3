# Every target bootstraps what it needs: uv (if missing), then the venv from uv.lock.
SHELL := /bin/bash
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := python3 -m uv
endif
RUN := $(UV) run --frozen
# Serving needs the project's own dependencies only: no test or lint toolchain. `uv run` syncs
# inexactly, so a venv that `make test` completed keeps its dev packages (no churn either way).
SERVE := $(UV) run --frozen --no-dev
CODE := api worker shared chatjobs_cli
# schemathesis makes its test cases as the run goes: under pytest-xdist, mixed with other files,
# only one of them ran. `make test` runs that file on its own, after the rest.
SCHEMATHESIS := tests/integration/test_schemathesis.py

.PHONY: help bootstrap serve-deps run api worker aws-local test test-unit test-integration test-e2e lint format bench clean dev diagrams console-screenshots

help:  ## list targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# Two stamps: .venv/.synced-run (what serving needs) and .venv/.synced (everything, dev tools
# too). A full sync satisfies both; a serving sync is --inexact so it never removes dev tools.
define need_uv
	@$(UV) --version >/dev/null 2>&1 || { echo "installing uv with pip" >&2; \
	  python3 -m pip install --quiet --user uv 2>/dev/null \
	  || python3 -m pip install --quiet --user --break-system-packages uv \
	  || python3 -m pip install --quiet uv; }
endef

.venv/.synced: pyproject.toml uv.lock
	$(need_uv)
	$(UV) sync --frozen
	@touch $@ .venv/.synced-run

.venv/.synced-run: pyproject.toml uv.lock
	$(need_uv)
	$(UV) sync --frozen --no-dev --inexact
	@touch $@

bootstrap: .venv/.synced  ## create the venv from uv.lock (with the dev and test tools)

serve-deps: .venv/.synced-run

dev: bootstrap  ## set up development: venv with dev deps, .env, the ruff pre-commit hook
	@UV="$(UV)" scripts/dev-setup

run: serve-deps  ## serve the embedded service on http://127.0.0.1:8000 (no config needed)
	$(SERVE) python -m api

api: serve-deps  ## run the API alone (uses REDIS_URL / *_BACKEND from the environment)
	$(SERVE) python -m api

worker: serve-deps  ## run one arq worker (needs REDIS_URL)
	$(SERVE) python -m worker

test: bootstrap  ## lint, then every test tier (starts its own Redis and stub servers), with coverage
	$(MAKE) --no-print-directory lint
	scripts/ensure-chromium || echo "chromium missing: the console's browser tests will skip" >&2
	$(RUN) pytest -q -p no:cacheprovider -n 2 --dist loadgroup --durations=25 --cov --cov-report= \
	  --ignore=$(SCHEMATHESIS)
	$(RUN) pytest -q -p no:cacheprovider --cov --cov-append --cov-report= $(SCHEMATHESIS)

test-unit: bootstrap  ## unit tests only (no I/O, seconds)
	$(RUN) pytest -q tests/unit

test-integration: bootstrap  ## contract and integration tests (real Valkey, moto, stub LLMs)
	$(RUN) pytest -q tests/contract tests/integration

test-e2e: bootstrap  ## end-to-end tests (the API and workers as processes)
	$(RUN) pytest -q tests/e2e

lint: bootstrap  ## ruff (lint + format check) and mypy on api worker shared chatjobs_cli tests
	$(RUN) ruff check $(CODE) tests bench
	$(RUN) ruff format --check $(CODE) tests bench
	$(RUN) mypy $(CODE) tests

format: bootstrap  ## ruff fix and format
	$(RUN) ruff check --fix $(CODE) tests bench
	$(RUN) ruff format $(CODE) tests bench

aws-local: serve-deps  ## the AWS layout (DynamoDB, SQS, Secrets Manager) on moto: API + SQS worker
	$(SERVE) --group aws-local python -m shared.adapters.aws.local

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

console-screenshots: bootstrap  ## retake docs/asset/console-*.png with the console's browser tests
	scripts/ensure-chromium
	CONSOLE_SCREENSHOTS=docs/asset $(RUN) pytest -q -p no:cacheprovider tests/e2e/test_console_browser.py

bench: bootstrap  ## the service against bare FastAPI and bare arq, same run (docs/PERFORMANCE.md)
	$(RUN) python -m bench

clean:  ## remove the venv, caches and data/
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache data
