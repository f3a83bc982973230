# Two set-up commands: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: run test lint clean

# The daemon and CLI need no TensorFlow: `run` installs the package alone.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.base: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# Tests need everything: the test tools, linters, and TensorFlow + tensorflow_hub as peers.
$(VENV)/.full: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[tf,test,dev]'
	touch $@ $(VENV)/.base

run: $(VENV)/.base
	$(BIN)/hubcache --help

test: $(VENV)/.full
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.full
	$(BIN)/ruff check hubcache tests
	$(BIN)/ruff format --check hubcache tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
