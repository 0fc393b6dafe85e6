# The two commands of the README work on a fresh machine: each makes the virtualenv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-fast bench gpu-wheels lint schemas clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

.venv: $(VENV)/.installed

run: .venv  ## start zeroserve with the iris demo model
	$(BIN)/zeroserve up --demo

test: .venv  ## the whole suite, slow end-to-end tests included
	$(BIN)/python -m pytest -q

test-fast: .venv  ## everything but the slow end-to-end tests
	$(BIN)/python -m pytest -q -m 'not slow'

bench: .venv  ## benchmarks, each next to its baseline
	$(BIN)/python -m bench

gpu-wheels: .venv  ## the wheels bench/gpu.sh installs on a GPU machine without the package index (CPython 3.12)
	rm -rf bench/gpu-wheels
	$(BIN)/python -m bench.gpu --wheels bench/gpu-wheels

lint: .venv  ## style, complexity (ruff), the layer contracts (import-linter) and types (mypy)
	$(BIN)/ruff check zeroserve functions tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy zeroserve

schemas: .venv  ## regenerate events/*.json from the event models
	$(BIN)/python -m zeroserve.events events

clean:
	rm -rf $(VENV) .zeroserve .pytest_cache .mypy_cache .ruff_cache
