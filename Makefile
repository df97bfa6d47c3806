# groupcast: `make run` starts the local stack, `make test` runs the test suite.
# Both install what they need first (a virtualenv from uv.lock, redis-server, Chromium).

SHELL := /bin/bash
UV_VERSION := $(shell sed -n 's/^required-version = "==\(.*\)"/\1/p' pyproject.toml)
TOOLS := .cache/tools
UV := $(TOOLS)/uv-$(UV_VERSION)/bin/uv
PYTHON := .venv/bin/python
# uv: use the machine's CA store and its Python, never download an interpreter.
export UV_SYSTEM_CERTS := 1
export UV_PYTHON_DOWNLOADS := never

.PHONY: help run manage test test-fast chart-test image push e2e bench soak fuzz audit metrics-picture deps system-deps clean

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

run: deps system-deps  ## start Redis, http :8000, socket :8001, worker (:9102) and the demo page
	$(PYTHON) -m devstack

run-cluster: deps system-deps  ## make run on a private local Redis Cluster (3 masters, 3 replicas)
	GROUPCAST_RUN_CLUSTER=1 $(PYTHON) -m devstack

manage: deps  ## a management command, e.g. make manage ARGS="groupcast_token user-1 news" (against make run's stack)
	$(PYTHON) -m devstack.manage $(ARGS)

test: deps system-deps  ## the whole test suite (unit, integration, browser, chart)
	$(PYTHON) -m pytest

test-fast: deps system-deps  ## the tests that need no extra processes or browser
	$(PYTHON) -m pytest -m "not slow"

chart-test: deps  ## helm lint/template over the values matrix, schema and manifest validation
	$(PYTHON) -m pytest tests/chart

image:  ## build the container image: podman (offline, Debian base) or docker, whichever is present
	hack/container.sh build

push:  ## build and push the image: make push IMAGE=<registry>/groupcast:<tag>
	hack/container.sh push "$(IMAGE)"

e2e:  ## end-to-end on a real kind cluster (builds its pinned tool chain first)
	e2e/run.sh

bench: deps  ## groupcast vs stock Channels, python-socketio and Centrifugo; ARGS="--cluster": the Redis topologies alone
	UV_PYTHON_DOWNLOADS=never $(UV) sync --frozen --all-groups
	$(PYTHON) -m bench $(ARGS)

soak: deps system-deps  ## 10 minutes of connect/subscribe/disconnect churn: memory, leaks, loss
	$(UV) sync --frozen --all-groups
	$(PYTHON) -m soak --minutes 10

metrics-picture: deps system-deps  ## render docs/dashboard.png from a real run and a real Prometheus
	$(UV) sync --frozen --all-groups
	$(PYTHON) hack/metrics-picture.py

fuzz: deps  ## a longer fuzzing and OpenAPI contract run (about 10 minutes)
	GROUPCAST_FUZZ_EXAMPLES=5000 GROUPCAST_SCHEMATHESIS_EXAMPLES=500 $(PYTHON) -m pytest tests/test_fuzz.py tests/integration/test_schemathesis.py

audit: deps  ## pip-audit of the locked runtime dependencies (needs the vulnerability database online)
	GROUPCAST_AUDIT=1 $(PYTHON) -m pytest tests/test_audit.py

deps: .venv/.synced

$(UV):
	python3 -m venv $(TOOLS)/uv-$(UV_VERSION)
	$(TOOLS)/uv-$(UV_VERSION)/bin/pip install --quiet uv==$(UV_VERSION)

.venv/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen
	touch $@

system-deps:  ## redis-server and Chromium from Debian, when missing
	hack/system-deps.sh

clean:  ## remove the virtualenv, caches and local run state
	rm -rf .venv .run .pytest_cache
