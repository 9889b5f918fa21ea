# `make demo` and `make test` do everything on a fresh machine: system
# packages, the virtual environment, the native build.  Each step is
# idempotent and skipped when already done.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PYTEST_ARGS ?=

NATIVE := $(wildcard native/*.c native/*.h native/*/*.c native/*/*.h native/build_ffi.py)

.PHONY: all venv build system-deps demo test test-host test-rdma bench-rdma clean

all: build

$(VENV)/.deps: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q 'cffi>=1.16' 'numpy>=1.24' 'pyzmq>=25' 'hdrhistogram>=0.10' \
	    'matplotlib>=3.7' 'hypothesis>=6' 'pytest>=8' 'pytest-timeout>=2'
	touch $@

venv: $(VENV)/.deps

# The RDMA data path (native/verbs) is built only where libibverbs' header
# exists; this stamp's name changes when it appears (make system-deps), so a
# later make (test-rdma runs in one) rebuilds with it.
VERBS_STAMP := $(VENV)/.verbs-$(if $(wildcard /usr/include/infiniband/verbs.h),yes,no)

$(VERBS_STAMP): $(VENV)/.deps
	rm -f $(VENV)/.verbs-*
	touch $@

$(VENV)/.built: $(VENV)/.deps $(NATIVE) setup.py $(VERBS_STAMP)
	$(PIP) install -q --no-build-isolation -e .
	touch $@

build: $(VENV)/.built

system-deps: $(VENV)/.deps
	bash tools/install-system-deps.sh
	bash tools/venv-pyverbs.sh $(abspath $(VENV))

demo: build
	$(PY) -m dataplane bench pingpong --size 64

test: build system-deps
	$(MAKE) test-host
	$(MAKE) test-rdma

test-host: build
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

test-rdma: build system-deps
	@# Through a pipe: QEMU opens its stdout path with O_TRUNC, which would
	@# wipe a log file that make's output is redirected to.
	set -o pipefail; bash tools/vm/run-in-vm.sh "$(PY) -m pytest -q -p no:cacheprovider tests/rdma" 2>&1 | cat

bench-rdma: build system-deps
	set -o pipefail; bash tools/vm/run-in-vm.sh "$(PY) -m dataplane.bench.rdma_lat --json build/rdma_lat.json" 2>&1 | cat

clean:
	rm -rf build $(VENV) *.egg-info dataplane/_native*.so
