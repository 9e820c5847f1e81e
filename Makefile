# Every target sets up what it needs: a virtualenv in .venv with the pinned requirements.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)
FIGURE ?= quadratic
RESULTS ?= results
# Test workers (pytest-xdist); each TensorFlow process runs with one thread.
TEST_WORKERS ?= 2

.PHONY: setup data reproduce reproduce-mnist reproduce-all test clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo 'python venv is missing: installing python3-venv (Debian)'; \
	  apt-get update -qq && apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

# Fetch, verify and cache MNIST, Fashion-MNIST and the Neural Art photographs (wheels of scikit-image
# and scikit-learn) in data/cache (idempotent).
data: setup
	$(PY) -m l2l_tf.data.prepare --datasets=mnist,fashion_mnist,photos

# Reproduce a figure from the shipped trained optimizer: $(RESULTS)/$(FIGURE).{png,json}. The
# figures and the data sets each needs come from the registry (l2l_tf/evaluation/figures.py:
# the paper's flagfiles in flags/ and the experiments' figures); a figure on a data set prepares
# that data set first (fast when it is cached).
reproduce: setup
	@datasets=$$($(PY) -m l2l_tf.reproduce --figure=$(FIGURE) --list_datasets) || exit 1; \
	  if [ -n "$$datasets" ]; then $(PY) -m l2l_tf.data.prepare --datasets=$$datasets || exit 1; fi
	$(PY) -m l2l_tf.reproduce --figure=$(FIGURE) --output_dir=$(RESULTS)

# The six MNIST figures of issue 3 (paper Figs. 4 centre/right, 5, 6): the registry's figures
# tagged both "paper" and "mnist".
reproduce-mnist: setup
	figures=$$($(PY) -m l2l_tf.reproduce --list_figures --tags=paper,mnist --runnable) || exit 1; \
	  for f in $$figures; do \
	  $(MAKE) --no-print-directory reproduce FIGURE=$$f RESULTS=$(RESULTS) || exit 1; done

# Every figure of the registry that runs from what is shipped (the others are named, with why).
reproduce-all: setup
	figures=$$($(PY) -m l2l_tf.reproduce --list_figures --runnable) || exit 1; \
	  for f in $$figures; do \
	  $(MAKE) --no-print-directory reproduce FIGURE=$$f RESULTS=$(RESULTS) || exit 1; done

test: setup data
	$(PY) -m pytest -q -n $(TEST_WORKERS) --durations=15 tests

clean-venv:
	rm -rf $(VENV)

# Bazel: build and test every target of BUILD offline with Debian's Bazel 4.2.3, installed when
# missing (as root). Writes the git-ignored .bazelrc for this checkout (tools/bazel/write_bazelrc.sh).
# Bazel caches test results: pass BAZEL_TEST_FLAGS=--nocache_test_results to rerun them all.
BAZEL ?= bazel
BAZEL_TEST_FLAGS ?=
.PHONY: bazel-test
bazel-test: setup data
	@if ! command -v $(BAZEL) >/dev/null || ! test -d /usr/share/bazel/tools/platforms \
	  || ! test -d /usr/share/bazel/rules/java; then \
	  echo "Installing Debian's Bazel: apt-get install bazel-bootstrap bazel-platforms bazel-rules-java"; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive \
	    apt-get install -y bazel-bootstrap bazel-platforms bazel-rules-java; fi
	sh tools/bazel/write_bazelrc.sh "$(CURDIR)" "$(CURDIR)/$(PY)"
	$(BAZEL) test $(BAZEL_TEST_FLAGS) //...
