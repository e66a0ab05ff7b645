# Every target installs what it needs: Debian packages (fuse3, libfuse3-dev,
# pkg-config, a C compiler and Python headers for pyfuse3) and a .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_PACKAGES := fuse3 libfuse3-dev pkg-config gcc python3-dev python3-venv \
	tar zip unzip gzip bzip2 xz-utils zstd lz4
NEEDED_COMMANDS := fusermount3 pkg-config gcc tar zip gzip bzip2 xz zstd lz4

.PHONY: deps system-deps test demo bench faults lint format clean

system-deps:
	@missing=""; for c in $(NEEDED_COMMANDS); do command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ] || ! pkg-config --exists fuse3 2>/dev/null \
	    || ! $(PYTHON) -m venv --help >/dev/null 2>&1; then \
	  echo "make: installing Debian packages: $(APT_PACKAGES)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

$(STAMP): pyproject.toml
	$(MAKE) system-deps
	rm -f $(VENV)/.installed-*
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

deps: system-deps $(STAMP)

test: deps
	$(PY) -m pytest tests -q

demo: deps
	$(VENV)/bin/artifactfs demo

# The baselines' own tools live in a separate venv: ratarmount is not a dependency.
.venv-bench/.installed:
	$(PYTHON) -m venv .venv-bench
	.venv-bench/bin/pip install -q --disable-pip-version-check ratarmount s3fs
	touch $@

bench: deps .venv-bench/.installed
	$(PY) tests/bench/bench_mount.py
	$(PY) tests/bench/bench_archives.py

# The fault, load and fuzz cases, longer than in `make test`; figures in build/faults.
FAULTS_DIR := build/faults
faults: deps
	rm -rf $(FAULTS_DIR)
	ARTIFACTFS_SOAK=15 ARTIFACTFS_FUZZ_EXAMPLES=20000 ARTIFACTFS_REPORT_DIR=$(FAULTS_DIR) \
	  $(PY) -m pytest -q tests/fuse/test_resilience.py tests/fuse/test_faults.py \
	  tests/fuse/test_load.py tests/unit/test_fuzz.py
	$(PY) tests/faults_report.py $(FAULTS_DIR)

lint: deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: deps
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
