# Set-up and test commands. `make test` works on a fresh machine: it creates
# .venv from nothing when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.classsel-setup

.PHONY: setup test bench clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --progress-bar off -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name classsel --display-name "Python (classsel)"
	touch $@

test: setup
	$(PY) -m pytest tests

bench: setup
	$(PY) -m classsel.bench

clean-venv:
	rm -rf $(VENV)
