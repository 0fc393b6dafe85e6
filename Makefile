# The two commands of the README work on a fresh machine: each makes the virtualenv first, with the
# versions the tests passed with (requirements/lock.txt), then zeroserve itself, editable.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements/lock.txt
# The console's browser tests drive Debian's Chromium with Playwright (Playwright's own download cannot work here).
CHROMIUM := /usr/bin/chromium
# The one library the console vendors (zeroserve/console/static/vendor), as npm publishes it.
CHART_JS := 4.6.2
CHART_JS_SHA256 := 3f288f4f26882c26b58931fb586a9b4f30370b5de38d69dc005b0bd05b08e113
CONSOLE_VENDOR := zeroserve/console/static/vendor

.PHONY: run test test-fast bench units simulate gpu-wheels lint schemas manifests lock check-install clean browser console-vendor console-screenshots

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

.venv: $(VENV)/.installed

run: .venv  ## start zeroserve with the iris demo model
	$(BIN)/zeroserve up --demo

test: .venv browser  ## the whole suite, slow end-to-end and browser tests included
	CONSOLE_BROWSER_REQUIRED=1 $(BIN)/python -m pytest -q

test-fast: .venv  ## everything but the slow end-to-end tests
	$(BIN)/python -m pytest -q -m 'not slow'

bench: .venv  ## benchmarks, each next to its baseline
	$(BIN)/python -m bench

units: .venv  ## the capacity model's per-unit costs (bench/units.py), into docs/capacity/units.json
	$(BIN)/python -m bench.units $(UNITS_FLAGS)

simulate: .venv  ## the capacity simulation: fixed against learned idle window, plots and numbers into docs/capacity
	$(BIN)/python -m simulation $(SIMULATE_FLAGS)

gpu-wheels: .venv  ## the wheels bench/gpu.sh installs on a GPU machine without the package index (CPython 3.12)
	rm -rf bench/gpu-wheels
	$(BIN)/python -m bench.gpu --wheels bench/gpu-wheels

lint: .venv  ## style, complexity (ruff), the layer contracts (import-linter) and types (mypy)
	$(BIN)/ruff check zeroserve tests bench simulation
	$(BIN)/lint-imports
	$(BIN)/mypy zeroserve

schemas: .venv  ## regenerate events/*.json from the event models
	$(BIN)/python -m zeroserve.events events

manifests: .venv  ## copy the serving templates and resource plans the package ships into manifests/base (kustomize reads only below it), and write NATS's users and permissions there
	rm -f manifests/base/templates/*.yaml
	cp zeroserve/templates/builtin/*.yaml manifests/base/templates/
	cp zeroserve/templates/resource-plans.yaml manifests/base/resource-plans.yaml
	$(BIN)/python -m zeroserve.core.nats_permissions > manifests/base/nats.conf

# Every extra (dev included), for this Python, resolved from pyproject.toml; pip and setuptools are
# locked too, zeroserve itself is not (dev names it for its extras: it is the "unsafe" package left out).
# pip-compile keeps the versions already locked where they still fit: `make lock LOCK_FLAGS=--upgrade`
# moves them all.
lock: .venv  ## refresh requirements/lock.txt (pip-tools)
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --all-extras --strip-extras --unsafe-package zeroserve \
		--no-emit-index-url --no-emit-find-links $(LOCK_FLAGS) --output-file $(LOCK) pyproject.toml

check-install:  ## what a user does: the wheel, into a fresh venv outside the repository, `zeroserve up --demo` called
	bash tests/check_install.sh

browser:  ## Debian's chromium, for the console's browser tests and screenshots, where it is missing
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1; then sudo=sudo; \
	else echo "$(CHROMIUM) is missing and this user cannot install it: run 'apt-get install chromium' as root" >&2; exit 1; fi; \
	echo "installing Debian's chromium (the console's browser tests drive it) ..."; \
	$$sudo apt-get update -qq && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
	|| { echo "could not install chromium with apt-get: install it (Debian's package 'chromium') and run make again" >&2; exit 1; }

console-vendor:  ## the console's Chart.js again from the npm registry, checked against its sha256
	@work=$$(mktemp -d) && trap 'rm -rf "$$work"' EXIT && \
	(cd "$$work" && npm pack --silent chart.js@$(CHART_JS) >/dev/null && tar xzf chart.js-$(CHART_JS).tgz) && \
	echo "$(CHART_JS_SHA256)  $$work/package/dist/chart.umd.min.js" | sha256sum --check --quiet && \
	cp "$$work/package/dist/chart.umd.min.js" $(CONSOLE_VENDOR)/chart.umd.min.js && \
	cp "$$work/package/LICENSE.md" $(CONSOLE_VENDOR)/chart.js-LICENSE.md && \
	echo "$(CONSOLE_VENDOR): Chart.js $(CHART_JS), sha256 $(CHART_JS_SHA256)"

console-screenshots: .venv browser  ## the console's main pages as PNGs in docs/console/ (a fresh zeroserve, Chromium)
	$(BIN)/python tests/console/screenshots.py docs/console

clean:
	rm -rf $(VENV) .zeroserve .pytest_cache .mypy_cache .ruff_cache
