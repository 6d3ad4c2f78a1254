# Set-up and test commands. `make test` works on a fresh machine: it creates
# .venv from nothing when needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.classsel-setup

.PHONY: setup test bench book browser clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --progress-bar off -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name classsel --display-name "Python (classsel)"
	touch $@

test: setup browser
	$(PY) -m pytest tests

# The executable paper: runs every notebook on the default preset (embedded MNIST,
# CPU; cached in runs/ and _build/.jupyter_cache), then renders _build/html.
book: setup
	$(VENV)/bin/jupyter-book build book

# Headless Chromium for the book's reader test (Debian packages; needs root and apt).
# Without it that test is skipped, saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "chromium is not installed: the book's browser test will be skipped"

bench: setup
	$(PY) -m classsel.bench

clean-venv:
	rm -rf $(VENV)
