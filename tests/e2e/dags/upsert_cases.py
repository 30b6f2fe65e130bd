"""Small DAGs around VikingDBUpsertOperator and deletion receipts: the e2e tests run them."""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, task

from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator, VikingDBUpsertOperator

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
COMMON = {"schedule": None, "start_date": START, "catchup": False, "tags": ["vikingdb-e2e"]}

# A load from an upstream task's records, a check, and a rollback of what the load wrote.
with DAG(
    "e2e_upsert_rollback",
    params={
        "records": Param([], type="array"),
        "ttl": Param(None, type=["null", "integer"]),
        "bad": Param(False, type="boolean"),
        "receipt": Param(None, type=["null", "string"]),
        "no_records": Param(False, type="boolean"),
    },
    **COMMON,
):

    @task
    def make_records(params=None):
        if params["no_records"]:
            raise RuntimeError("the extract failed: the load never runs")
        return params["records"]

    load = VikingDBUpsertOperator(
        task_id="load",
        collection_name="test_coll",
        records=make_records(),
        ttl="{{ params.ttl }}",
        max_concurrency=4,
    )

    @task
    def validate(summary, params=None):
        if params["bad"]:
            raise ValueError(f"validation failed for {summary['ids_written']} rows")

    checked = validate(load.output)
    rollback = VikingDBDeleteOperator(
        task_id="rollback",
        collection_name="test_coll",
        ids=load.written_ids,
        trigger_rule="one_failed",
        receipt="{{ params.receipt }}",
    )
    checked >> rollback

# A load from a JSON Lines file (records_path, templated), streamed twice: checked, then sent.
with DAG(
    "e2e_upsert_file",
    params={"path": Param("", type="string"), "ttl": Param(None, type=["null", "integer"])},
    **COMMON,
):
    file_load = VikingDBUpsertOperator(
        task_id="load", collection_name="test_coll", records_path="{{ params.path }}", ttl="{{ params.ttl }}"
    )
    VikingDBDeleteOperator(
        task_id="rollback", collection_name="test_coll", ids=file_load.written_ids, trigger_rule="one_failed"
    )

# Deletes with a receipt: by ids, or everything.
with DAG(
    "e2e_delete_receipt",
    params={
        "ids": Param(None, type=["null", "array"]),
        "del_all": Param(False, type="boolean"),
        "receipt": Param("", type="string"),
    },
    **COMMON,
):

    @task
    def find_ids(params=None):
        return params["ids"]

    VikingDBDeleteOperator(
        task_id="delete",
        collection_name="test_coll",
        ids=find_ids(),
        receipt="{{ params.receipt }}",
        max_concurrency=4,
    )

with DAG("e2e_delete_all_receipt", params={"receipt": Param("", type="string")}, **COMMON):
    VikingDBDeleteOperator(
        task_id="delete",
        collection_name="test_coll",
        del_all=True,
        index_name="test_coll_index",
        receipt="{{ params.receipt }}",
    )
