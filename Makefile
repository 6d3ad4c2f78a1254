# Set-up and test commands. `make test` works on a fresh machine: it creates
# .venv from nothing when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.classsel-setup
# Every package at the exact version of the committed lock (`make lock` writes it with uv).
LOCK := requirements/lock.txt
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
UV_STAMP := $(VENV)/.uv-$(UV_VERSION)

.PHONY: setup lock test bench book pdf pack browser clean-venv

setup: $(STAMP)

# uv from PyPI (pinned), installed into the venv by its own pip.
$(UV_STAMP):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --progress-bar off uv==$(UV_VERSION)
	touch $@

# Reinstalls when the lock, pyproject.toml, this file (how it installs) or uv's version changes, not on
# every `make test`.
# --compile-bytecode: every module of the environment compiled once here (about 20 s on 2 cores). uv
# writes no .pyc of its own, and where PYTHONDONTWRITEBYTECODE is set (as on the machines this project is
# developed on) Python never caches one: every process compiled torch, sympy, scipy and seaborn again from
# source (`import torch` 2.6 s instead of 1.2 s, a notebook kernel's first cell about 2.4 s more).
$(STAMP): $(LOCK) pyproject.toml Makefile $(UV_STAMP)
	$(UV) pip install --python $(PY) --compile-bytecode -r $(LOCK) -e .
	$(PY) -m ipykernel install --sys-prefix --name classsel --display-name "Python (classsel)"
	touch $@

# Re-resolve the lock from pyproject.toml's ranges on PyPI for every platform and Python >= 3.10,
# keeping the locked versions that still fit (`make lock UPGRADE=--upgrade` takes the newest of all),
# then Binder's CPU pins from it. `pip install -e .` still installs from the ranges.
lock: $(UV_STAMP)
	$(UV) pip compile pyproject.toml --extra test --universal $(UPGRADE) \
		--custom-compile-command "make lock" -o $(LOCK)
	$(PY) -m classsel.lockfile binder

# The suite in $(TEST_PROCESSES) processes (pytest-xdist; tests/conftest.py keeps the tests of the session's
# smoke store and book in one of them, and each module's tests together, and orders the groups longest first).
TEST_PROCESSES ?= 2
test: setup browser
	$(PY) -m pytest tests -n $(TEST_PROCESSES) --dist loadgroup --no-loadscope-reorder

# The executable paper on the default preset (embedded MNIST, CPU): first every run and analysis the
# sections need, in one pool of processes with one progress bar (`python -m classsel reproduce`;
# interrupted, it goes on where it stopped), then the notebooks, which only read the run store,
# rendered into _build/html. CLASSSEL_PRESET=smoke for a build in minutes.
book: setup
	$(PY) -m classsel reproduce
	$(VENV)/bin/jupyter-book build book

# The book as a PDF, _build/pdf/classsel.pdf: the book that `make book` built, as one page printed
# by headless Chromium ($CHROMIUM, else Debian's chromium, installed by the browser target). It
# executes no notebook: a book not built, or changed since, is an error.
pdf: setup
	@[ -n "$$CHROMIUM" ] || $(MAKE) --no-print-directory browser
	$(PY) -m classsel.pdf

# The results pack of the run store (runs/, or $CLASSSEL_RUNS): every finished run's results without
# checkpoints, and the notebooks' results, with checksums. `python -m classsel pack import FILE`
# loads it into another store, where the book builds without training.
PACK ?= _build/html/classsel-results.tar.gz
pack: setup
	mkdir -p $(dir $(PACK))
	$(PY) -m classsel pack export $(PACK)

# Headless Chromium for the book's reader and PDF tests, and pdftotext (poppler-utils) for the PDF's
# word positions (Debian packages; needs root and apt). Without them those tests are skipped, saying why.
browser:
	@{ command -v chromium && command -v pdftotext; } >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] \
		&& command -v apt-get >/dev/null 2>&1 && apt-get update -qq \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium poppler-utils >/dev/null; } \
		|| echo "chromium or pdftotext is not installed: the book's browser and PDF tests that need them will be skipped"

bench: setup
	$(PY) -m classsel.bench

clean-venv:
	rm -rf $(VENV)
