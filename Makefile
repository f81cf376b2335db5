# Two commands: `make dev` runs the service on an embedded default,
# `make test` runs the whole suite. Each sets up its own virtualenv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: dev test lint bench clean browser-deps chromium

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

dev: $(STAMP)
	$(BIN)/nats-auth-callout dev

lint: $(STAMP)
	$(BIN)/ruff format --check service tests benchmarks
	$(BIN)/ruff check service tests benchmarks
	$(BIN)/mypy service tests benchmarks

test: lint browser-deps
	$(BIN)/nats-server --version
	$(BIN)/pytest --cov --cov-report=term

# The real-browser test (tests/integration/test_browser.py) drives Debian's
# Chromium with playwright-core from examples/browser. Both steps do nothing
# when already done: npm ci reruns only when package-lock.json changes.
BROWSER  := examples/browser
CHROMIUM ?= /usr/bin/chromium

browser-deps: chromium $(BROWSER)/node_modules/.package-lock.json

chromium:
	@if [ -x "$(CHROMIUM)" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then \
	  echo "$(CHROMIUM) is missing and this is not root on Debian: install Chromium" \
	       "(sudo apt-get install -y chromium) or set CHROMIUM=/path/to/chromium" >&2; \
	  exit 1; \
	fi; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium </dev/null

$(BROWSER)/node_modules/.package-lock.json: $(BROWSER)/package-lock.json $(BROWSER)/package.json
	@command -v npm >/dev/null || { echo "npm is missing: install Node.js 18+ with npm" >&2; exit 1; }
	cd $(BROWSER) && npm ci --no-audit --no-fund
	touch $@

bench: $(STAMP)
	$(BIN)/python benchmarks/micro.py
	$(BIN)/python benchmarks/handler.py
	$(BIN)/python benchmarks/refusals.py
	$(BIN)/python benchmarks/storms.py $(STORMS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage .coverage.*
