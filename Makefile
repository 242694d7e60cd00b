# Everything a fresh machine needs: `make demo` runs the demo, `make test` runs the checks.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint typecheck unit wire bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/flame-agents demo

test: lint typecheck
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(STAMP)
	$(PY) -m mypy

wire: $(STAMP)
	$(PY) scripts/gen_wire.py

bench: $(STAMP)
	$(VENV)/bin/flame-agents bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
