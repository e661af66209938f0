# Everything runs from a local virtualenv that this Makefile creates; nothing else needs installing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench bench-quick browser clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "podci needs Python 3.11 or newer; set PYTHON=python3.x"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)  ## one real build of the bundled example, embedded Redis + local backend
	$(BIN)/podci run

test: $(STAMP) browser  ## the whole test suite (starts its own Redis servers and workers)
	$(BIN)/pytest

browser:  ## Debian's chromium for the browser test (Playwright drives it; it downloads no browser)
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "install Debian's chromium (apt-get install chromium) for the browser test"; fi; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)  ## every benchmark, fault run and the fuzz run; a table, and bench/results/*.json
	$(BIN)/python -m bench.all

bench-quick: $(STAMP)  ## the same with small counts, to try it out
	$(BIN)/python -m bench.all --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
