# Two commands: `make dev` runs the service on an embedded default,
# `make test` runs the whole suite. Each sets up its own virtualenv.
# Not part of `make test`: `make lint-deploy` (checkov over deploy/, its own
# virtualenv) and `make image-smoke` (builds and checks the container image).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: dev test lint bench clean browser-deps chromium lint-deploy image-smoke

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

# checkov (an infrastructure-as-code scanner) over deploy/: the Dockerfile and
# the Kubernetes manifests (and their kustomization, when kubectl is there).
# It has ~100 dependencies with tight pins (~300 MB), so it lives in a
# virtualenv of its own, made on first use, and is not part of `make test`.
# --skip-download: no calls to the vendor's API (the checks are built in).
# Findings not fixed are skipped in the files, each with its reason.
CHECKOV_VERSION ?= 3.3.30
CHECKOV_VENV    := .venv-checkov
CHECKOV_STAMP   := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)

$(CHECKOV_STAMP):
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $@

lint-deploy: $(CHECKOV_STAMP)
	$(CHECKOV_VENV)/bin/checkov --directory deploy --skip-download --compact --quiet

# Build deploy/Dockerfile with docker or podman and smoke-test the image
# against a host nats-server (deploy/image-smoke.sh says what it checks).
image-smoke: $(STAMP)
	deploy/image-smoke.sh

bench: $(STAMP)
	$(BIN)/python benchmarks/micro.py
	$(BIN)/python benchmarks/handler.py
	$(BIN)/python benchmarks/refusals.py
	$(BIN)/python benchmarks/storms.py $(STORMS)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .coverage .coverage.*
