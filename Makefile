# Every target sets itself up: a fresh clone needs only Python 3.11 and the package registries.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench proto clean

$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (set PYTHON=...)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.lock
	# The embedded OPA engine's metadata asks for Python 3.14; its ctypes wrapper runs on 3.11.
	$(PY) -m pip install -q --disable-pip-version-check --ignore-requires-python --no-deps opa-golib-python-bindings==0.4.4
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/reconciler demo $(DEMO_ARGS)

test: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q
	$(VENV)/bin/reconciler policy test policies rego-tests

lint: $(STAMP)
	$(VENV)/bin/ruff check reconciler tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

proto: $(STAMP)
	$(PY) -m reconciler.stream.generate

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
