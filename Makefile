# recjax: `make quickstart` runs the main job, `make test` runs the tests.
# Both create .venv with Python 3.11 if needed and install into it; a stamp
# file makes the second run fast.

PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.stamp-$(shell cat setup.py | sha256sum | cut -c1-12)
TEST_STAMP := $(VENV)/.stamp-test-$(shell cat setup.py | sha256sum | cut -c1-12)
export PYTHONUNBUFFERED := 1
export TF_CPP_MIN_LOG_LEVEL := 2
PYTEST_WORKERS ?= 2
PYTEST_ARGS ?=

.PHONY: quickstart test test-explore lint format bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel

$(STAMP): $(PY) setup.py
	$(PIP) install --quiet -e .
	touch $@

$(TEST_STAMP): $(STAMP)
	$(PIP) install --quiet -e '.[test]'
	touch $@

quickstart: $(STAMP)
	$(PY) -m recjax.quickstart

# The pinned assets are fetched once before the workers start (offline with
# a cold cache, the tests marked `network` skip with the reason).
test: $(TEST_STAMP)
	$(PY) -m recjax.assets
	$(PY) -m pytest -n $(PYTEST_WORKERS) -q $(PYTEST_ARGS) tests

# Property tests with fresh random examples (and more of them).
test-explore: $(TEST_STAMP)
	RECJAX_HYPOTHESIS_PROFILE=explore $(PY) -m pytest -n $(PYTEST_WORKERS) \
	  -q $(shell grep -l "hypothesis.given" tests/test_*.py)

lint: $(TEST_STAMP)
	$(PY) -m ruff check recjax tasks tests benchmarks

format: $(TEST_STAMP)
	$(PY) -m ruff format recjax tasks tests benchmarks

clean:
	rm -rf $(VENV) runs *.egg-info
