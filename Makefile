# Every target sets up what it needs: a virtualenv in .venv with the pinned requirements.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)
FIGURE ?= quadratic
RESULTS ?= results
# Test workers (pytest-xdist); each TensorFlow process runs with one thread.
TEST_WORKERS ?= 2

.PHONY: setup reproduce reproduce-all test clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo 'python venv is missing: installing python3-venv (Debian)'; \
	  apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

# Reproduce a paper figure from the shipped trained optimizer: $(RESULTS)/$(FIGURE).{png,json}.
reproduce: setup
	$(PY) -m l2l_tf.reproduce --figure=$(FIGURE) --output_dir=$(RESULTS)

reproduce-all: setup
	for f in flags/*.flags; do $(PY) -m l2l_tf.reproduce --figure=$$(basename $$f .flags) \
	  --output_dir=$(RESULTS) || exit 1; done

test: setup
	$(PY) -m pytest -q -n $(TEST_WORKERS) --durations=15 tests

clean-venv:
	rm -rf $(VENV)
