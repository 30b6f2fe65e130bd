"""DAGs with Airflow ``retries``: which failures Airflow retries and which fail the task at once."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator, VikingDBUpsertOperator

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
COMMON = {"schedule": "@daily", "start_date": START, "catchup": False, "tags": ["vikingdb-e2e"]}
# dag.test() runs a retry once retry_delay has passed: keep it short.
RETRIES = {"retry_delay": dt.timedelta(seconds=1)}

# Nightly retention with one Airflow retry (a blip beyond the hook's own retries heals on try 2),
# and with two (a failure no retry can fix, wrong credentials, must not use them).
for dag_id, retries in (("e2e_retry_retention", 1), ("e2e_retry_retention_twice", 2)):
    with DAG(dag_id, default_args={"retries": retries, **RETRIES}, **COMMON):
        VikingDBDeleteOperator(
            task_id="delete",
            collection_name="events",
            index_name="events_index",
            time_field="created_at",
            older_than=dt.timedelta(days=90),
            index_settle=3,
            index_poke_interval=0.3,
        )

with DAG(
    "e2e_retry_ids",
    params={"ids": Param([], type="array")},
    default_args={"retries": 2, **RETRIES},
    **COMMON,
):
    VikingDBDeleteOperator(task_id="delete", collection_name="events", ids="{{ params.ids }}")

with DAG(
    "e2e_retry_upsert",
    params={"records": Param([], type="array")},
    default_args={"retries": 2, **RETRIES},
    **COMMON,
):
    VikingDBUpsertOperator(task_id="load", collection_name="events", records="{{ params.records }}")

# A deletion receipt in an object store (the test's flaky://) that may not answer on try 1.
with DAG(
    "e2e_retry_receipt",
    params={"ids": Param([], type="array"), "receipt": Param("", type="string")},
    default_args={"retries": 2, **RETRIES},
    **COMMON,
):
    VikingDBDeleteOperator(
        task_id="delete",
        collection_name="events",
        ids="{{ params.ids }}",
        receipt="{{ params.receipt }}",
    )

# A load with an Airflow retry and the rollback of what it wrote: try 1 writes part of it, try 2
# fails at once; the rollback must take back what either try wrote.
with DAG(
    "e2e_retry_load_rollback",
    params={"records": Param([], type="array")},
    default_args={"retries": 1, **RETRIES},
    **COMMON,
):
    retried_load = VikingDBUpsertOperator(
        task_id="load", collection_name="events", records="{{ params.records }}", max_concurrency=1
    )
    VikingDBDeleteOperator(
        task_id="rollback",
        collection_name="events",
        ids=retried_load.written_ids,
        trigger_rule="one_failed",
        retries=0,
    )
