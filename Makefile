# Everything runs from a local virtualenv that this Makefile creates; nothing else needs installing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "podci needs Python 3.11 or newer; set PYTHON=python3.x"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## one real build of the bundled example, embedded Redis + local backend
	$(BIN)/podci run

test: $(STAMP)  ## the whole test suite (starts its own Redis servers and workers)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)  ## prints numbers; never part of `make test`
	$(BIN)/python bench/pipeline_rate.py
	$(BIN)/python bench/intake.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
