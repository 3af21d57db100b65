# wsgate: the two commands of the README's quick start are `make demo` and `make test`.
# Both create the virtual environment in .venv on first use (Python >= 3.11 and npm needed).

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test unit lint types style check venv node clean

demo: $(STAMP)
	$(VENV)/bin/wsgate demo

test: $(STAMP) node_modules/.package-lock.json
	$(PY) -m pytest $(PYTEST_ARGS)

# The benchmark against nginx (docs/performance.md): about 4 minutes; writes and prints
# bench/results/latest.md. Needs nginx and node (`make node`); BENCH_ARGS=--help for flags.
.PHONY: bench
bench: $(STAMP) node_modules/.package-lock.json
	$(PY) -m bench $(BENCH_ARGS)

unit: $(STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

style: $(STAMP)
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

types: $(STAMP)
	$(VENV)/bin/mypy

check: lint types test

venv: $(STAMP)

# pip install -e also compiles the C relay (src/wsgate/_relay.c), so a change to it reinstalls.
$(STAMP): pyproject.toml setup.py src/wsgate/_relay.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

# Real peers for the interop tests (npm ws, wscat and playwright-core, pinned by package-lock.json).
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

node: node_modules/.package-lock.json

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
