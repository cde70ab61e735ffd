# Every target sets itself up: a fresh clone needs only Python 3.11 and the package registries.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench fuzz proto clean chart-policies

# requirements.lock: the runtime set (what the image installs); requirements-dev.lock: that
# plus the tools; requirements-opa.lock: the embedded OPA engine, shared with the Dockerfile.
$(STAMP): pyproject.toml requirements.lock requirements-dev.lock requirements-opa.lock
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (set PYTHON=...)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.lock
	# The embedded OPA engine's metadata asks for Python 3.14; its ctypes wrapper runs on 3.11.
	$(PY) -m pip install -q --disable-pip-version-check --ignore-requires-python --no-deps -r requirements-opa.lock
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/reconciler demo $(DEMO_ARGS)

test: $(STAMP)
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q -n auto
	$(VENV)/bin/reconciler policy test policies rego-tests

lint: $(STAMP)
	$(VENV)/bin/ruff check reconciler tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

# The fuzzers of tests/fuzz with random seeds, each for FUZZ_SECONDS (`make test` runs them
# briefly, derandomized); a failure prints the example and the blob that reproduces it.
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	FUZZ_SECONDS=$(FUZZ_SECONDS) $(PY) -m pytest -q -p no:cacheprovider --timeout=0 tests/fuzz

proto: $(STAMP)
	$(PY) -m reconciler.stream.generate

# The operator's image (Dockerfile), tagged with the project's version; needs a running
# container engine, which `docker info` must reach.
VERSION ?= $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml)
IMAGE ?= dakr-reconciler
.PHONY: image
image:
	@docker info >/dev/null 2>&1 || { echo "error: no container engine is reachable (\`docker info\` failed): start Docker or point DOCKER_HOST at one, then run \`make image\` again" >&2; exit 2; }
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE):$(VERSION) .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Copies the default policy library (policies/**/*.rego without tests, policies/data.yaml)
# into the Helm chart (manifests/files/policies/); tests/unit/chart fails when it is stale.
chart-policies: $(STAMP)
	$(PY) manifests/sync_policies.py
