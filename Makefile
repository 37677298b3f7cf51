# Nexus Wiki: `make run` serves the wiki, `make test` runs the whole suite. Both set everything up.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi.py
PORT ?= 8000
# make run serves plain HTTP on localhost; behind HTTPS set SESSION_COOKIE_SECURE=true.
SESSION_COOKIE_SECURE ?= false
export SESSION_COOKIE_SECURE

.PHONY: run test bench lint venv clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Nexus Wiki needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	@touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(BIN)/pip install --quiet -r requirements-dev.txt
	@touch $@

venv: $(VENV)/.runtime

run: $(VENV)/.runtime
	$(BIN)/flask db upgrade
	$(BIN)/flask wiki ensure-admin
	$(BIN)/flask wiki import content --if-empty
	PORT=$(PORT) exec $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

test: $(VENV)/.dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.dev
	$(BIN)/python bench/run.py

lint: $(VENV)/.dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache
