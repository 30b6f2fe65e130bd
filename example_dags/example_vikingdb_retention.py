"""Data retention: every day, delete the embeddings of documents past their retention period.

No list of ids is needed: each record carries ``updated_ts``, an int64 epoch in seconds
with a scalar index in ``{collection}_index``, and the operator deletes what is older than
``retention_days`` at the run's ``data_interval_end`` (a retry of the same run deletes the
same set). VikingDB has no delete-by-filter: the operator searches the index page by page
(ordered by ``updated_ts``), deletes each page, waits until the index has applied the
deletes and verifies that nothing older than the cutoff is left. ``max_delete`` stops a
run that would delete more than a day's retention should (a wrong field, a wrong unit).
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag

from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator


@dag(
    dag_id="vikingdb_retention",
    schedule="@daily",
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    params={
        "collection": Param("documents", type="string", description="VikingDB collection to clean"),
        "retention_days": Param(30, type="integer", minimum=1, description="Keep documents this recent"),
    },
    tags=["vikingdb", "example"],
)
def vikingdb_retention():
    VikingDBDeleteOperator(
        task_id="delete_expired",
        collection_name="{{ params.collection }}",
        index_name="{{ params.collection }}_index",
        time_field="updated_ts",  # int64 epoch seconds (time_unit="ms" for milliseconds)
        older_than="{{ params.retention_days * 86400 }}",  # seconds; or a timedelta
        max_delete=1000,  # fail, deleting nothing, if more than this many match
    )


vikingdb_retention()
