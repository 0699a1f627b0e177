# The two commands a new user needs: `make demo` and `make test`. Everything is installed here, from PyPI.
#
#   make test          ruff + the test suite on Airflow 3 (.venv) and on Airflow 2.11 (.venv-airflow2)
#   make demo          start the emulators and run the example lead feed DAG in real Airflow
#   make bench         the performance benchmarks (prints each figure and its ratio to the goal)
#
# Installs are pinned by constraints/airflow-*.txt (Airflow's own constraint files live on GitHub, which this
# build does not reach); `make constraints` refreshes them from a clean resolve.

PYTHON ?= python3
AIRFLOW_VERSION ?= 3.3.2
AIRFLOW2_VERSION ?= 2.11.2
VENV ?= .venv
VENV2 ?= .venv-airflow2
PYTEST_ARGS ?=

# Both distributions of this repository, editable: the provider and the emulator (emulator/), which the provider's
# `emulator` extra pins. The emulator is not on PyPI: it is always installed from its folder, and the extra resolves
# to that install (a version mismatch between the two fails here).
INSTALL := -e ./emulator -e ".[dev,emulator]"

UV := $(VENV)/bin/uv
PY := $(VENV)/bin/python
PY2 := $(VENV2)/bin/python

.PHONY: test test-airflow3 test-airflow2 lint demo bench constraints clean

test: lint test-airflow3 test-airflow2

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv

$(VENV)/.installed: $(UV) pyproject.toml emulator/pyproject.toml constraints/airflow-3.txt
	$(UV) pip install --quiet --python $(PY) -c constraints/airflow-3.txt \
		"apache-airflow==$(AIRFLOW_VERSION)" $(INSTALL)
	touch $@

$(VENV2)/.installed: $(UV) pyproject.toml emulator/pyproject.toml constraints/airflow-2.txt
	test -x $(PY2) || $(PYTHON) -m venv --without-pip $(VENV2)
	$(UV) pip install --quiet --python $(PY2) -c constraints/airflow-2.txt \
		"apache-airflow==$(AIRFLOW2_VERSION)" $(INSTALL)
	touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test-airflow3: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

test-airflow2: $(VENV2)/.installed
	$(PY2) -m pytest $(PYTEST_ARGS)

demo: $(VENV)/.installed
	$(PY) -m dev.demo

bench: $(VENV)/.installed
	$(PY) -m benchmarks

constraints: $(UV)
	for line in "3 $(AIRFLOW_VERSION)" "2 $(AIRFLOW2_VERSION)"; do set -- $$line; \
		tmp=$$(mktemp -d); $(PYTHON) -m venv --without-pip $$tmp/venv; \
		$(UV) pip install --quiet --python $$tmp/venv/bin/python "apache-airflow==$$2" $(INSTALL) && \
		$(UV) pip freeze --python $$tmp/venv/bin/python --exclude-editable > constraints/airflow-$$1.txt; \
		rm -rf $$tmp; done

clean:
	rm -rf $(VENV) $(VENV2) .pytest_cache .ruff_cache .demo .bench
