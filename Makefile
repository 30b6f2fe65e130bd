# The commands of the README: `make demo`, `make test` and `make test-lower`. Everything they need
# (virtualenvs, packages, Airflow metadata DBs, local server) is made here, from scratch.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/example_dags
export AIRFLOW__CORE__UNIT_TEST_MODE := False

# `make test-lower`: the whole suite again, in its own venv and AIRFLOW_HOME, with every runtime
# dependency at exactly the lower bound pyproject.toml declares (.ci/lower_bounds.py reads them).
LOWER_VENV  := .venv-lower
LOWER_BIN   := $(LOWER_VENV)/bin
LOWER_STAMP := $(LOWER_VENV)/.installed
LOWER_HOME  := $(CURDIR)/.airflow-lower
# Packages the code uses but pyproject.toml does not declare get a floor here (none today: httpx
# is declared, at the floor Airflow 3.1.8's task SDK requires).
LOWER_FLOORS :=
# Airflow's constraints files cannot be fetched here (PyPI is the only host reachable), so the rest
# of the lower environment is pinned by a frozen copy of one the suite passed in, per Python version.
PY_VERSION   := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
LOWER_FROZEN := .ci/constraints-lower-$(PY_VERSION).txt

# pytest exits 5 when it collected no test: a run that checked nothing fails, and says so.
RUN_PYTEST = $(1)/pytest $(PYTEST_ARGS) || { rc=$$?; [ $$rc -ne 5 ] || echo "pytest ran no test (exit 5): that is a failure" >&2; exit $$rc; }

.PHONY: venv test lint typecheck fmt serve demo bench clean airflow-db test-lower lower-venv lower-constraints

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

# dag.test() needs a migrated metadata DB in a project-local AIRFLOW_HOME.
airflow-db: $(AIRFLOW_HOME)/.migrated
$(AIRFLOW_HOME)/.migrated: $(STAMP)
	mkdir -p $(AIRFLOW_HOME)
	$(BIN)/airflow db migrate > $(AIRFLOW_HOME)/migrate.log 2>&1 || (cat $(AIRFLOW_HOME)/migrate.log; exit 1)
	touch $@

# mypy only here, against the newest Airflow in .venv: `test-lower` does not lint (the Airflow 3.1
# fallbacks in _compat.py are not what mypy checks).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

typecheck: $(STAMP)
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint airflow-db
	$(call RUN_PYTEST,$(BIN))

lower-venv: $(LOWER_STAMP)

$(LOWER_STAMP): pyproject.toml .ci/lower_bounds.py $(wildcard $(LOWER_FROZEN))
	rm -rf $(LOWER_VENV) $(LOWER_HOME)
	$(PYTHON) -m venv $(LOWER_VENV)
	$(LOWER_BIN)/python -m pip install -q --upgrade pip
	$(PYTHON) .ci/lower_bounds.py constraints --frozen $(LOWER_FROZEN) $(LOWER_FLOORS) > $(LOWER_VENV)/constraints.txt
	$(LOWER_BIN)/python -m pip install -q -c $(LOWER_VENV)/constraints.txt -e '.[dev]'
	$(LOWER_BIN)/python .ci/lower_bounds.py check $(LOWER_FLOORS)
	touch $@

$(LOWER_HOME)/.migrated: $(LOWER_STAMP)
	mkdir -p $(LOWER_HOME)
	AIRFLOW_HOME=$(LOWER_HOME) $(LOWER_BIN)/airflow db migrate > $(LOWER_HOME)/migrate.log 2>&1 \
		|| (cat $(LOWER_HOME)/migrate.log; exit 1)
	touch $@

test-lower: $(LOWER_HOME)/.migrated
	$(LOWER_BIN)/python .ci/lower_bounds.py check $(LOWER_FLOORS)
	AIRFLOW_HOME=$(LOWER_HOME) $(call RUN_PYTEST,$(LOWER_BIN))

# Re-freezes $(LOWER_FROZEN): the lower bounds pinned, everything else as pip resolves it today.
# Run it when a lower bound moves or for a new Python, then `make test-lower`, and commit the file.
lower-constraints:
	rm -rf $(LOWER_VENV) $(LOWER_HOME)
	$(PYTHON) -m venv $(LOWER_VENV)
	$(LOWER_BIN)/python -m pip install -q --upgrade pip
	$(PYTHON) .ci/lower_bounds.py constraints $(LOWER_FLOORS) > $(LOWER_VENV)/constraints.txt
	$(LOWER_BIN)/python -m pip install -q -c $(LOWER_VENV)/constraints.txt -e '.[dev]'
	$(LOWER_BIN)/python -m pip freeze --exclude-editable \
		| $(PYTHON) .ci/lower_bounds.py freeze $(LOWER_FLOORS) > $(LOWER_FROZEN)
	rm -rf $(LOWER_VENV)

serve: $(STAMP)
	$(BIN)/vikingdb-local $(SERVE_ARGS)

demo: airflow-db
	$(BIN)/python scripts/demo.py

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) $(AIRFLOW_HOME) $(LOWER_VENV) $(LOWER_HOME) .pytest_cache .ruff_cache .mypy_cache *.egg-info
