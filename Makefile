# `make demo`: set up and run artq on the embedded default (SQLite, built-in simulator, no servers).
# `make test`: set up and run the whole test suite (needs the local MariaDB and Redis; see README).
# `make test-deploy`: build the image, start the compose stack, check it (faults included), take it
#   down (needs a Docker engine with Compose v2; scripts/test-deploy.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q

.PHONY: demo test test-deploy bench lint clean services

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	scripts/system-deps.sh build
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	scripts/system-deps.sh test
	$(PIP) install -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/artq demo

test: $(VENV)/.installed-test services
	$(PY) -m pytest

test-deploy: $(VENV)/.installed-test
	scripts/test-deploy.sh

services:
	scripts/services.sh

lint: $(VENV)/.installed-test
	$(PIP) install ruff
	$(VENV)/bin/ruff check artq workers tests beat_schedule.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
