# Two commands: `make train` (setup + cpu-demo run) and `make test` (setup + lint + tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: setup train test lint bench clean

setup: $(STAMP)

# torch is pinned and installed first, on its own, so that nothing later pulls another build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check torch==2.13.0
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

train: setup
	$(BIN)/jepagolf data demo --if-missing
	$(BIN)/jepagolf train --preset cpu-demo $(ARGS)

test: setup lint
	$(BIN)/python -m pytest -x

lint: setup
	$(BIN)/ruff check jepagolf tests

bench: setup
	$(BIN)/jepagolf bench --preset cpu-demo

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
