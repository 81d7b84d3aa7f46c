# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# torch is pinned to the CPU build that installs from the local wheel; the library itself only asks for a range.
PYTHON ?= python3
VENV ?= .venv
PIP := $(VENV)/bin/python -m pip
TORCH := torch==2.13.0

.PHONY: demo test test-fast lint

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed-%: pyproject.toml | $(VENV)/bin/python
	$(PIP) install --quiet "$(TORCH)" -e ".[$*]"
	touch $@

demo: $(VENV)/.installed-verify
	$(VENV)/bin/modularize demo

test: $(VENV)/.installed-test
	$(VENV)/bin/ruff check src tests benchmarks fixtures
	$(VENV)/bin/ruff format --check src tests benchmarks fixtures
	$(VENV)/bin/python -m pytest -q -n 2 --durations=10

# the unit + golden tier, for an answer while working (CI runs everything through `make test`)
test-fast: $(VENV)/.installed-test
	$(VENV)/bin/python -m pytest -q -n 2 -m "not slow"
