# Every target that needs Python installs into .venv first (idempotent, re-run when pyproject.toml changes).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_ARGS ?=
BENCH_ARGS ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## .*$$' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,msk]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install the project with its dev tools

demo: $(STAMP) ## Run the whole pipeline on a local stack with demo traffic (DEMO_ARGS="--exit-after-summary" for CI)
	$(BIN)/solicit demo $(DEMO_ARGS)

test: $(STAMP) ## Run the whole test suite (unit, integration, end to end) with the statemachine coverage gate
	$(BIN)/python -m pytest --cov --cov-report= --ignore=tests/chaos $(PYTEST_ARGS)
	$(BIN)/python -m coverage report --include='statemachine/*' --fail-under=100

chaos: $(STAMP) ## Run the chaos suite (workers and the broker killed mid-run, faults injected; about 10 minutes)
	$(BIN)/python -m pytest tests/chaos -m chaos -s $(PYTEST_ARGS)

bench: $(STAMP) ## Issue 12's goals P1-P5 with their ratios (BENCH_ARGS="--quick" for a smoke run; full: ~30 min)
	$(BIN)/python -m bench.run_all $(BENCH_ARGS)

lint: $(STAMP) ## Lint with ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP) ## Type-check with mypy (strict on statemachine/)
	$(BIN)/mypy statemachine connectors streams devstack

docs: $(STAMP) ## Regenerate docs/configuration.md from the settings and docs/schemas from the topic models
	$(BIN)/python -m devstack.settings > docs/configuration.md
	$(BIN)/python -m streams.schemas docs/schemas
	$(BIN)/python -m streams.web.openapi docs/openapi.json

SCREENSHOT ?= docs/img/dashboard.png
SCREENSHOT_TESTS ?= tests/e2e/test_dashboard.py
screenshot: $(STAMP) ## Save the dashboard of a demo run to docs/img/dashboard.png (headless Chromium, real workers)
	SOLICIT_SCREENSHOT=$(SCREENSHOT) $(BIN)/python -m pytest -m screenshot -p no:cacheprovider $(SCREENSHOT_TESTS) $(PYTEST_ARGS)

clean: ## Remove build and test artefacts (keeps .venv and the Kafka jar cache)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov .hypothesis

.PHONY: help install demo test chaos bench lint typecheck docs screenshot clean
