# Two set-up commands: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

BENCH_ARGS ?=

.PHONY: run test lint bench system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The daemon and CLI need no TensorFlow: `run` installs the package alone.
$(VENV)/.base: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# Tests need everything: test tools, linters, TensorFlow + tensorflow_hub as real peers.
$(VENV)/.full: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[tf,test,dev]'
	touch $@ $(VENV)/.base

# Start the daemon with defaults (cache: $$TFHUB_CACHE_DIR or ~/.cache/hubcache;
# socket: $$XDG_RUNTIME_DIR/hubcache/hubcache.sock or /run/hubcache/hubcache.sock).
run: $(VENV)/.base
	exec $(BIN)/hubcache daemon

system-deps:
	./scripts/system-deps

test: $(VENV)/.full system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# By hand, never in CI: hubcache vs tensorflow_hub side by side; writes docs/benchmarks.md.
bench: $(VENV)/.full
	$(BIN)/python benchmarks/bench.py $(BENCH_ARGS)

lint: $(VENV)/.full
	$(BIN)/ruff check hubcache tests benchmarks
	$(BIN)/ruff format --check hubcache tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
