# The two commands a new user needs: `make demo` and `make test`. Everything is installed here, from PyPI.
#
#   make test          ruff, mypy (make typecheck), the full test suite on Airflow 3.3 (.venv) and 2.11
#                      (.venv-airflow2), then the smoke suite (tests/smoke) on Airflow 2.10, 3.0, 3.1 and 3.2
#                      (.venv-airflow-<line>)
#   make demo          start the emulators and run the example lead feed DAG in real Airflow
#   make bench         the performance benchmarks (prints each figure and its ratio to the goal)
#   make dist          the provider's and the emulator's wheels and sdists in dist/, checked (twine check, the
#                      packaging tests) and installed from dist/ into a fresh venv
#   make docs          the docs (docs/) as a site in site/, with MkDocs in strict mode (a broken link, a missing anchor
#                      or a page missing from the navigation fails)
#   make test-deployment
#                      every example DAG in a real deployment of each supported line (2.10, 2.11, 3.0-3.3), installed
#                      from the built wheels (tests/deployment); .ci/run runs it after make test
#   make test-distributed
#                      the rate limit on a real CeleryExecutor deployment (Postgres, Redis, two Celery workers as two
#                      hosts; tests/distributed), in .venv-distributed; .ci/run runs it after make test
#
# Installs are pinned by constraints/airflow-<line>.txt (Airflow's own constraint files live on GitHub, which this
# build does not reach); `make constraints` refreshes them from a clean resolve (`make constraints LINES=3.0` for
# one line).

PYTHON ?= python3
AIRFLOW_VERSION ?= 3.3.2
AIRFLOW2_VERSION ?= 2.11.2
VENV ?= .venv
VENV2 ?= .venv-airflow2
PYTEST_ARGS ?=

# The lines that get the smoke suite, each in .venv-airflow-<line>: its version, and the day after that version
# reached PyPI. Their constraints are resolved as of that day (uv --exclude-newer), as Airflow's own constraint
# files are: dependencies released later break them (universal-pathlib 0.3 breaks the ObjectStoragePath of 2.10.5
# and 3.0.6, newer fastapi/cadwyn/pydantic the in-process execution API of 3.0.6 and 3.2.2).
SMOKE_LINES := 2.10 3.0 3.1 3.2
AIRFLOW_2.10 := 2.10.5
RELEASED_2.10 := 2025-02-11
AIRFLOW_3.0 := 3.0.6
RELEASED_3.0 := 2025-08-30
AIRFLOW_3.1 := 3.1.8
RELEASED_3.1 := 2026-03-12
AIRFLOW_3.2 := 3.2.2
RELEASED_3.2 := 2026-05-30
# The two fully tested lines resolve to the newest dependencies.
AIRFLOW_$(basename $(AIRFLOW_VERSION)) := $(AIRFLOW_VERSION)
AIRFLOW_$(basename $(AIRFLOW2_VERSION)) := $(AIRFLOW2_VERSION)
LINES ?= $(basename $(AIRFLOW_VERSION)) $(basename $(AIRFLOW2_VERSION)) $(SMOKE_LINES)

# Both distributions of this repository, editable: the provider and the emulator (emulator/), which the provider's
# `emulator` extra pins. The emulator is not on PyPI: it is always installed from its folder, and the extra resolves
# to that install (a version mismatch between the two fails here).
# `make typecheck` (mypy) runs in $(VENV) only, so only its line gets the typecheck extra (and pins it).
EXTRAS := dev,emulator,parquet
EXTRAS_$(basename $(AIRFLOW_VERSION)) := $(EXTRAS),typecheck
install = -e ./emulator -e ".[$(or $(EXTRAS_$(1)),$(EXTRAS))]"

UV := $(VENV)/bin/uv
PY := $(VENV)/bin/python
PY2 := $(VENV2)/bin/python
SMOKE_TESTS := $(addprefix test-smoke-,$(SMOKE_LINES))

.PHONY: test test-airflow3 test-airflow2 test-smoke $(SMOKE_TESTS) lint typecheck demo bench constraints clean \
	test-distributed constraints-distributed dist docs constraints-release
.PRECIOUS: .venv-airflow-%/.installed

test: lint typecheck test-airflow3 test-airflow2 test-smoke

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv

$(VENV)/.installed: $(UV) pyproject.toml emulator/pyproject.toml constraints/airflow-$(basename $(AIRFLOW_VERSION)).txt
	$(UV) pip install --quiet --python $(PY) -c constraints/airflow-$(basename $(AIRFLOW_VERSION)).txt \
		"apache-airflow==$(AIRFLOW_VERSION)" $(call install,$(basename $(AIRFLOW_VERSION)))
	touch $@

$(VENV2)/.installed: $(UV) pyproject.toml emulator/pyproject.toml constraints/airflow-$(basename $(AIRFLOW2_VERSION)).txt
	test -x $(PY2) || $(PYTHON) -m venv --without-pip $(VENV2)
	$(UV) pip install --quiet --python $(PY2) -c constraints/airflow-$(basename $(AIRFLOW2_VERSION)).txt \
		"apache-airflow==$(AIRFLOW2_VERSION)" $(call install,$(basename $(AIRFLOW2_VERSION)))
	touch $@

.venv-airflow-%/.installed: $(UV) pyproject.toml emulator/pyproject.toml constraints/airflow-%.txt
	test -x .venv-airflow-$*/bin/python || $(PYTHON) -m venv --without-pip .venv-airflow-$*
	$(UV) pip install --quiet --python .venv-airflow-$*/bin/python -c constraints/airflow-$*.txt \
		"apache-airflow==$(AIRFLOW_$*)" $(call install,$*)
	touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# mypy over the package (the wheel ships py.typed), configured in pyproject.toml ([tool.mypy]), against the Airflow
# of $(VENV).
typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

test-airflow3: $(VENV)/.installed
	$(PY) -m pytest $(PYTEST_ARGS)

test-airflow2: $(VENV2)/.installed
	$(PY2) -m pytest $(PYTEST_ARGS)

test-smoke: $(SMOKE_TESTS)

$(SMOKE_TESTS): test-smoke-%: .venv-airflow-%/.installed
	.venv-airflow-$*/bin/python -m pytest tests/smoke $(PYTEST_ARGS)

# The distributed test's venv: Airflow $(AIRFLOW_VERSION) with the CeleryExecutor (Redis broker), Postgres drivers (psycopg2
# for the metadata DB and the Celery result backend, asyncpg for Airflow's async engine) and redis, pinned by
# constraints/airflow-$(basename $(AIRFLOW_VERSION))-distributed.txt (`make constraints-distributed` refreshes it).
# celery < 5.7: apache-airflow-providers-celery (3.26.0, the newest) imports celery.backends.database.retry, which
# celery 5.7 removed.
VENV_DIST ?= .venv-distributed
DIST_CONSTRAINTS := constraints/airflow-$(basename $(AIRFLOW_VERSION))-distributed.txt
DIST_PACKAGES := "apache-airflow==$(AIRFLOW_VERSION)" apache-airflow-providers-celery "celery[redis]<5.7" psycopg2-binary \
	asyncpg redis -e ./emulator -e ".[dev,emulator,redis]"

$(VENV_DIST)/.installed: $(UV) pyproject.toml emulator/pyproject.toml $(DIST_CONSTRAINTS)
	test -x $(VENV_DIST)/bin/python || $(PYTHON) -m venv --without-pip $(VENV_DIST)
	$(UV) pip install --quiet --python $(VENV_DIST)/bin/python -c $(DIST_CONSTRAINTS) $(DIST_PACKAGES)
	touch $@

# Starts (and stops) Postgres, Redis, the emulator and an Airflow deployment with two Celery workers; installs
# redis-server and postgresql from Debian's packages when they are missing. See tests/distributed/.
test-distributed: $(VENV_DIST)/.installed
	CARECYCLE_TEST_DISTRIBUTED=1 $(VENV_DIST)/bin/python -m pytest -p no:cacheprovider -s \
		--confcutdir=tests/distributed tests/distributed $(PYTEST_ARGS)

# -- make test-deployment: every supported line as users install it ------------------------------------------------
# The provider's and the emulator's wheels, built afresh, installed (not editable) with each line's Airflow into
# .venv-deploy-<line>, pinned by constraints/airflow-<line>.txt, with what the example DAGs and the test need besides
# (the SQLite provider for the warehouse feed, pytest). Then tests/deployment/test_real_deployment.py runs there: one
# deployment per line (db migrate, api-server/webserver, scheduler, dag-processor, triggerer), every example DAG
# triggered from the CLI and through the REST API. The lines run one after another; each line's time is printed,
# and every line runs even when one fails.
DEPLOY_LINES := 2.10 2.11 3.0 3.1 3.2 3.3
DEPLOY_TESTS := $(addprefix test-deployment-,$(DEPLOY_LINES))
DEPLOY_DIST := dist/deployment
VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' airflow_provider_carecycle/__init__.py)
PROVIDER_WHEEL := $(DEPLOY_DIST)/airflow_provider_carecycle-$(VERSION)-py3-none-any.whl
EMULATOR_WHEEL := $(DEPLOY_DIST)/carecycle_emulator-$(VERSION)-py3-none-any.whl
sources = $(shell find $(1) -type f -not -path '*/__pycache__/*')

.PHONY: test-deployment $(DEPLOY_TESTS)

test-deployment: $(PROVIDER_WHEEL) $(EMULATOR_WHEEL)
	@failed=; all=$$(date +%s); \
	for line in $(DEPLOY_LINES); do \
		start=$$(date +%s); \
		$(MAKE) --no-print-directory test-deployment-$$line || failed="$$failed $$line"; \
		echo "== make test-deployment: Airflow $$line took $$(( $$(date +%s) - start )) s"; \
	done; \
	echo "== make test-deployment: $(words $(DEPLOY_LINES)) lines took $$(( $$(date +%s) - all )) s"; \
	if [ -n "$$failed" ]; then echo "== make test-deployment failed on:$$failed"; exit 1; fi

$(PROVIDER_WHEEL): $(UV) pyproject.toml README.md LICENSE $(call sources,airflow_provider_carecycle)
	$(UV) build --quiet --wheel --out-dir $(DEPLOY_DIST) .

$(EMULATOR_WHEEL): $(UV) $(call sources,emulator/pyproject.toml emulator/README.md emulator/LICENSE emulator/src)
	$(UV) build --quiet --wheel --out-dir $(DEPLOY_DIST) emulator

# .venv-deploy-<line> with the built wheels (make test-deployment-<line>, make test-triggerer)
deploy_venv = test -x .venv-deploy-$(1)/bin/python || $(PYTHON) -m venv --without-pip .venv-deploy-$(1); \
	$(UV) pip install --quiet --python .venv-deploy-$(1)/bin/python -c constraints/airflow-$(1).txt \
		--reinstall-package airflow-provider-carecycle --reinstall-package carecycle-emulator \
		"apache-airflow==$(AIRFLOW_$(1))" "$(PROVIDER_WHEEL)[emulator]" $(EMULATOR_WHEEL) apache-airflow-providers-sqlite pytest

# One line, e.g. `make test-deployment-3.1`.
$(DEPLOY_TESTS): test-deployment-%: $(PROVIDER_WHEEL) $(EMULATOR_WHEEL) constraints/airflow-%.txt
	$(call deploy_venv,$*)
	CARECYCLE_TEST_DEPLOYMENT=1 .venv-deploy-$*/bin/python -m pytest -p no:cacheprovider -s \
		--confcutdir=tests/deployment tests/deployment/test_real_deployment.py $(PYTEST_ARGS)

# -- make test-triggerer: a real Airflow triggerer full of careCycle sensors (issue 25) -----------------------------
# One deployment of the newest line from the built wheels (as make test-deployment): per flavour, a DAG run whose 500
# mapped campaign sensors on one key and a canary trigger (asyncio.to_thread once a second) are deferred into the
# triggerer as a worker defers them; the flavours run one after the other: Airflow's own DateTimeTrigger as a
# control (no careCycle), the stats trigger as it was (polls in threads), and today's (FIGURES_FLAVOURS=async:
# today's only, as .ci/run does, about 4 minutes). A probe records the trigger runner's full garbage collections.
# Prints the figures of docs/operators/campaigns.md and fails when today's trigger misses a goal that is behaviour
# (429s, requests per window, starvation, a blocked loop no garbage collection explains, canary wait, one INFO line)
# (tests/deployment/test_triggerer_figures.py).
TRIGGERER_LINE := $(basename $(AIRFLOW_VERSION))
FIGURES_FLAVOURS ?= control threaded async

.PHONY: test-triggerer
test-triggerer: $(PROVIDER_WHEEL) $(EMULATOR_WHEEL) constraints/airflow-$(TRIGGERER_LINE).txt
	$(call deploy_venv,$(TRIGGERER_LINE))
	CARECYCLE_TEST_TRIGGERER=1 FIGURES_FLAVOURS="$(FIGURES_FLAVOURS)" .venv-deploy-$(TRIGGERER_LINE)/bin/python -m pytest -p no:cacheprovider -s \
		--confcutdir=tests/deployment tests/deployment/test_triggerer_figures.py $(PYTEST_ARGS)

demo: $(VENV)/.installed
	$(PY) -m dev.demo

# -- make dist, make docs: the release tools -----------------------------------------------------------------------
# twine (make dist) and MkDocs with the Material theme (make docs) live in a small venv of their own, .venv-release,
# pinned by constraints/release-tools.txt (`make constraints-release` refreshes it), so they never touch the pins of
# the Airflow venvs.
VENV_RELEASE ?= .venv-release
RELEASE_TOOLS := twine mkdocs mkdocs-material
DIST ?= dist

$(VENV_RELEASE)/.installed: $(UV) constraints/release-tools.txt
	test -x $(VENV_RELEASE)/bin/python || $(PYTHON) -m venv --without-pip $(VENV_RELEASE)
	$(UV) pip install --quiet --python $(VENV_RELEASE)/bin/python -c constraints/release-tools.txt $(RELEASE_TOOLS)
	touch $@

# Both distributions, wheel and sdist (the wheel built from the sdist, as pip would from PyPI), into $(DIST)/; then
# twine's metadata and README checks, the packaging tests on these very files (tests/test_packaging.py), and the
# README's `pip install --find-links dist 'airflow-provider-carecycle[emulator]'` in a fresh venv
# (tests/test_dist_install.py).
dist: $(VENV)/.installed $(VENV_RELEASE)/.installed
	rm -f $(DIST)/*.whl $(DIST)/*.tar.gz
	$(UV) build --quiet --out-dir $(DIST) .
	$(UV) build --quiet --out-dir $(DIST) emulator
	$(VENV_RELEASE)/bin/twine check --strict $(DIST)/*.whl $(DIST)/*.tar.gz
	CARECYCLE_DIST=$(DIST) $(PY) -m pytest -p no:cacheprovider tests/test_packaging.py tests/test_dist_install.py \
		$(PYTEST_ARGS)

# The docs as a site (mkdocs.yml), strict: every warning fails the build (no --quiet: MkDocs counts only the warnings
# it prints). Then tests/test_docs_site.py proves the build fails on a broken link, a missing anchor, a page missing
# from the navigation. NO_MKDOCS_2_WARNING: the Material theme's banner about MkDocs 2, which this build does not use.
docs: $(VENV)/.installed $(VENV_RELEASE)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV_RELEASE)/bin/mkdocs build --strict --site-dir site
	CARECYCLE_MKDOCS=$(VENV_RELEASE)/bin/mkdocs $(PY) -m pytest -p no:cacheprovider tests/test_docs_site.py $(PYTEST_ARGS)

constraints-release: $(UV)
	tmp=$$(mktemp -d) && $(PYTHON) -m venv --without-pip $$tmp/venv && \
	$(UV) pip install --quiet --python $$tmp/venv/bin/python $(RELEASE_TOOLS) && \
	$(UV) pip freeze --python $$tmp/venv/bin/python > constraints/release-tools.txt; \
	status=$$?; rm -rf $$tmp; exit $$status

bench: $(VENV)/.installed
	$(PY) -m benchmarks

constraints: $(addprefix constraints-,$(LINES))

constraints-%: $(UV)
	tmp=$$(mktemp -d) && $(PYTHON) -m venv --without-pip $$tmp/venv && \
	$(UV) pip install --quiet --python $$tmp/venv/bin/python $(if $(RELEASED_$*),--exclude-newer $(RELEASED_$*)) \
		"apache-airflow==$(AIRFLOW_$*)" $(call install,$*) && \
	$(UV) pip freeze --python $$tmp/venv/bin/python --exclude-editable > constraints/airflow-$*.txt; \
	status=$$?; rm -rf $$tmp; exit $$status

constraints-distributed: $(UV)
	tmp=$$(mktemp -d) && $(PYTHON) -m venv --without-pip $$tmp/venv && \
	$(UV) pip install --quiet --python $$tmp/venv/bin/python $(DIST_PACKAGES) && \
	$(UV) pip freeze --python $$tmp/venv/bin/python --exclude-editable > $(DIST_CONSTRAINTS); \
	status=$$?; rm -rf $$tmp; exit $$status

clean:
	rm -rf $(VENV) $(VENV2) $(VENV_DIST) $(addprefix .venv-airflow-,$(SMOKE_LINES)) $(addprefix .venv-deploy-,$(DEPLOY_LINES)) $(DEPLOY_DIST) .pytest_cache .ruff_cache .mypy_cache .demo .bench \
		$(VENV_RELEASE) site $(DIST)/*.whl $(DIST)/*.tar.gz
