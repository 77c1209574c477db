# The two commands of the README: `make run` (install, then the quickstart) and
# `make test` (install, then the test suite). torch is installed first and pinned:
# an unpinned torch would pull a multi-GB CUDA build.
PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install run test bench

install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[test]"

run: install
	fedsim run scenarios/quickstart.yaml

test: install
	$(PYTHON) -m pytest -n 2 --dist loadgroup tests

bench: install
	$(PYTHON) benchmarks/scale.py
