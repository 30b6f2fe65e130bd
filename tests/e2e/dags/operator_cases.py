"""Small DAGs that feed VikingDBDeleteOperator each way a DAG author can: the e2e tests run them."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, task

from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
COMMON = {"schedule": None, "start_date": START, "catchup": False, "tags": ["vikingdb-e2e"]}
PARAMS = {"ids": Param(["a", "b"], type=["array", "null"]), "collection": "test_coll"}

# ids from an XComArg: the real list, with repeats, and the dependency.
with DAG("e2e_xcomarg", params=PARAMS, **COMMON):

    @task
    def find_ids(params=None):
        return params["ids"]

    VikingDBDeleteOperator(task_id="delete", collection_name="{{ params.collection }}", ids=find_ids())

# ids from a mapped task: Airflow hands over a lazy sequence, one id per mapped instance.
with DAG("e2e_mapped", params=PARAMS, **COMMON):

    @task
    def one_id(value):
        return value

    mapped = one_id.expand(value=["m1", "m2", "m3", "m2"])
    VikingDBDeleteOperator(task_id="delete", collection_name="test_coll", ids=mapped)

# Mapped deletes, one per chunk of a list, each capped at its part of the quota: what
# docs/performance.md tells a user whose mapped tasks share a collection.
with DAG("e2e_mapped_capped", **COMMON):
    VikingDBDeleteOperator.partial(task_id="delete", collection_name="test_coll", rows_per_second=500).expand(
        ids=[[f"chunk{k}_{i}" for i in range(300)] for k in range(2)]
    )

# ids from a Jinja string: renders to the *text* of the list (or "None").
with DAG("e2e_jinja", params=PARAMS, **COMMON):

    @task
    def find_ids(params=None):
        return params["ids"]

    found = find_ids()
    delete = VikingDBDeleteOperator(
        task_id="delete",
        collection_name="test_coll",
        ids="{{ ti.xcom_pull(task_ids='find_ids') }}",
    )
    found >> delete

# A Jinja string pulling from a task that has not run yet when it renders (here it
# even runs after): Jinja creates no dependency, so this is what a missing one looks like.
with DAG("e2e_jinja_no_dependency", params=PARAMS, **COMMON):

    @task
    def find_ids(params=None):
        return params["ids"]

    delete = VikingDBDeleteOperator(
        task_id="delete",
        collection_name="test_coll",
        ids="{{ ti.xcom_pull(task_ids='find_ids') }}",
    )
    delete >> find_ids()

# del_all from a templated flag ("true"/"false" in any case).
with DAG("e2e_del_all_flag", params={"purge": Param("false", type="string")}, **COMMON):
    VikingDBDeleteOperator(task_id="delete", collection_name="test_coll", del_all="{{ params.purge }}")
