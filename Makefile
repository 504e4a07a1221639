# Two commands: `make train` (setup + cpu-demo run) and `make test` (setup + lint + tests).
# CI tests Python 3.11 only (requires-python); python3.11 is taken when it is on PATH.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || echo python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: setup train test lint bench clean check-pythons

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

# Python 3.12 and 3.13 (not in CI: their torch install alone takes 1-1.5 minutes each): the parity, data
# and model tests in .venv-3.12 / .venv-3.13; PYTHONS="python3.13" picks others.
PYTHONS ?= python3.12 python3.13
check-pythons:
	bash scripts/check_pythons.sh $(PYTHONS)

bench: setup
	$(BIN)/jepagolf bench --preset cpu-demo

clean:
	rm -rf $(VENV) .venv-3.* build *.egg-info .pytest_cache .ruff_cache
