# Everything runs from a local virtualenv that this Makefile creates; nothing else needs installing.
# Packages are installed by uv (itself installed into the virtualenv from PyPI; pip when it cannot be),
# and each target installs only what it needs: `make run` the service's own dependencies, `make test`,
# `make lint` and `make bench` their extras from pyproject.toml on top.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
INSTALL = if [ -x $(BIN)/uv ]; then $(BIN)/uv pip install --quiet --python $(BIN)/python $(1); \
          else $(BIN)/python -m pip install --quiet $(1); fi

.PHONY: run test lint bench bench-quick bench-inflight browser clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "podci needs Python 3.11 or newer; set PYTHON=python3.x"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check uv || \
		echo "uv could not be installed; installing with pip instead (slower)"

$(VENV)/.run: pyproject.toml | $(BIN)/python
	@$(call INSTALL,-e .)
	@touch $@

$(VENV)/.%: pyproject.toml | $(BIN)/python
	@$(call INSTALL,-e '.[$*]')
	@touch $@ $(VENV)/.run

run: $(VENV)/.run  ## one real build of the bundled example, embedded Redis + local backend
	$(BIN)/podci run

test: $(VENV)/.test browser  ## the whole test suite (starts its own Redis servers and workers)
	$(BIN)/pytest

browser:  ## Debian's chromium for the browser test (Playwright drives it; it downloads no browser)
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "install Debian's chromium (apt-get install chromium) for the browser test"; fi; }

lint: $(VENV)/.lint  ## ruff, ruff format, mypy (strict) and the import rules of docs/architecture.md
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(VENV)/.bench  ## every benchmark, fault run and the fuzz run; a table, and bench/results/*.json
	$(BIN)/python -m bench.all

bench-quick: $(VENV)/.bench  ## the same with small counts, to try it out
	$(BIN)/python -m bench.all --quick

BUILDS ?= 10000
bench-inflight: $(VENV)/.bench  ## BUILDS (10,000) builds waiting at once on one worker; its figures join the table
	$(BIN)/python -m bench.inflight --builds $(BUILDS) --json bench/results/inflight-$(BUILDS).json

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
