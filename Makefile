# The two commands of the README: `make demo` and `make test`. Everything they need
# (virtualenv, packages, Airflow metadata DB, local server) is made here, from scratch.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/example_dags
export AIRFLOW__CORE__UNIT_TEST_MODE := False

.PHONY: venv test lint typecheck fmt serve demo bench clean airflow-db

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

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Not part of `lint` (nor of `test`) yet: the runtime modules still have errors to fix.
typecheck: $(STAMP)
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint airflow-db
	$(BIN)/pytest $(PYTEST_ARGS)

serve: $(STAMP)
	$(BIN)/vikingdb-local $(SERVE_ARGS)

demo: airflow-db
	$(BIN)/python scripts/demo.py

bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) $(AIRFLOW_HOME) .pytest_cache .ruff_cache .mypy_cache *.egg-info
