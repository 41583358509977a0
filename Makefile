# Every target sets up .venv on first use, so `make test` on a fresh clone does everything.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: dev test bench lint micropython-lib clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed: make PYTHON=python3.11 ...")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[edge,server,dev]'
	touch $(STAMP)

dev: $(STAMP)
	$(VENV)/bin/fc-dev

test: $(STAMP)
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) tools/bench/core.py

lint: $(STAMP)
	$(VENV)/bin/ruff check core edge server tools tests

# The core as .mpy files for a MicroPython device or the unix port: build/micropython/lib
micropython-lib: $(STAMP)
	$(PY) tools/micropython_lib.py build/micropython/lib

clean:
	rm -rf $(VENV) build dist .pytest_cache
