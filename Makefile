# The two commands of the README work on a fresh machine: each makes the virtualenv first, with the
# versions the tests passed with (requirements/lock.txt), then zeroserve itself, editable.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt

.PHONY: run test test-fast bench gpu-wheels lint schemas manifests lock check-install clean

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
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
	$(BIN)/ruff check zeroserve tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy zeroserve

schemas: .venv  ## regenerate events/*.json from the event models
	$(BIN)/python -m zeroserve.events events

manifests:  ## copy the serving templates and resource plans the package ships into manifests/base (kustomize reads only below it)
	rm -f manifests/base/templates/*.yaml
	cp zeroserve/templates/builtin/*.yaml manifests/base/templates/
	cp zeroserve/templates/resource-plans.yaml manifests/base/resource-plans.yaml

# Every extra (dev included), for this Python, resolved from pyproject.toml; pip and setuptools are
# locked too, zeroserve itself is not (dev names it for its extras: it is the "unsafe" package left out).
# pip-compile keeps the versions already locked where they still fit: `make lock LOCK_FLAGS=--upgrade`
# moves them all.
lock: .venv  ## refresh requirements/lock.txt (pip-tools)
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --all-extras --strip-extras --unsafe-package zeroserve \
		--no-emit-index-url --no-emit-find-links $(LOCK_FLAGS) --output-file $(LOCK) pyproject.toml

check-install:  ## what a user does: the wheel, into a fresh venv outside the repository, `zeroserve up --demo` called
	bash tests/check_install.sh

clean:
	rm -rf $(VENV) .zeroserve .pytest_cache .mypy_cache .ruff_cache
