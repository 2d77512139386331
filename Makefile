# The two commands of the README:
#   make demo   set up (once), then run the MaskDiff pipeline on the embedded dataset
#   make test   set up (once), then run the test suite (what CI runs)
# `make setup` alone builds .venv; a second run takes seconds.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
PYTEST_ARGS ?=

.PHONY: setup test test-fast demo clean-setup

setup: $(STAMP)

$(STAMP): tools/setup_env.sh pyproject.toml setup.cfg setup.py
	PYTHON="$(PYTHON)" VENV="$(VENV)" bash tools/setup_env.sh
	touch $@

# The suite runs on pytest-xdist workers, one per core up to 4, a test file
# at a time (each worker computes on one thread; tests/conftest.py hands out
# the files with slow tests first). TEST_WORKERS=0 runs it in this process,
# one test after the other.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))
XDIST_ARGS := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test: $(STAMP)
	$(PY) -m pytest $(XDIST_ARGS) $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest $(XDIST_ARGS) -m "not slow" $(PYTEST_ARGS)

demo: $(STAMP)
	$(PY) tools/run_demo.py $(DEMO_ARGS)

clean-setup:
	rm -f $(STAMP)
