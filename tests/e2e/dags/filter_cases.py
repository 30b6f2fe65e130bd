"""DAGs that delete by filter (issue 12): the e2e tests run them against a local server with index lag."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param

from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
COMMON = {"schedule": "@daily", "start_date": START, "catchup": False, "tags": ["vikingdb-e2e"]}
# The local server's index lags ~1 s in these tests: a short settle, frequent looks.
FAST = {"index_settle": 3, "index_poke_interval": 0.3}

# Retention on created_at in epoch seconds ("s"); "_ms" reads it as milliseconds (the tests load
# either unit into it: milliseconds, or seconds for the unit mistake).
for dag_id, time_unit in (("e2e_filter_retention", "s"), ("e2e_filter_retention_ms", "ms")):
    with DAG(dag_id, params={"dry_run": Param(False, type="boolean")}, **COMMON):
        VikingDBDeleteOperator(
            task_id="delete",
            collection_name="events",
            index_name="events_index",
            time_field="created_at",
            older_than=dt.timedelta(days=90),
            time_unit=time_unit,
            dry_run="{{ params.dry_run }}",
            **FAST,
        )

with DAG(
    "e2e_filter_only",
    params={"source": Param("crm", type="string"), "max_delete": Param(None, type=["integer", "null"])},
    **COMMON,
):
    VikingDBDeleteOperator(
        task_id="delete",
        collection_name="events",
        index_name="events_index",
        filter={"op": "must", "field": "source", "conds": ["{{ params.source }}"]},
        **FAST,
    )

with DAG("e2e_filter_capped", **COMMON):
    VikingDBDeleteOperator(
        task_id="delete",
        collection_name="events",
        index_name="events_index",
        filter={"op": "must", "field": "source", "conds": ["crm"]},
        max_delete=100,
        **FAST,
    )

# The filter as text from the run's conf: how a bad one fails.
with DAG("e2e_filter_from_conf", params={"filter": Param("{}", type="string")}, **COMMON):
    VikingDBDeleteOperator(
        task_id="delete",
        collection_name="events",
        index_name="events_index",
        filter="{{ params.filter }}",
        **FAST,
    )

# Retention with a receipt, one delete request at a time (so a fault lands on a known batch) in
# pages of 300 (so the run spans pages: a page's split is not the whole run's).
with DAG("e2e_filter_retention_receipt", params={"receipt": Param("", type="string")}, **COMMON):
    VikingDBDeleteOperator(
        task_id="delete",
        collection_name="events",
        index_name="events_index",
        time_field="created_at",
        older_than=dt.timedelta(days=90),
        receipt="{{ params.receipt }}",
        page_size=300,
        max_concurrency=1,
        **FAST,
    )
