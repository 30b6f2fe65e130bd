"""Data retention: every day, delete the embeddings of documents past their retention period.

The source of truth is a small catalog of documents (``data/documents.csv``:
id, title, updated_at) standing in for your source system. The upstream task
finds the ids older than ``retention_days`` at the run's logical date and hands
them to the delete step as an XComArg: the real list, and the dependency.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

from airflow.sdk import Param, dag, get_current_context, task

from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator

CATALOG = Path(__file__).parent / "data" / "documents.csv"


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
    @task
    def find_expired_ids() -> list[str]:
        context = get_current_context()
        now = context.get("logical_date") or dt.datetime.now(dt.timezone.utc)
        cutoff = (now - dt.timedelta(days=int(context["params"]["retention_days"]))).date()
        with CATALOG.open(newline="") as f:
            expired = [
                row["id"] for row in csv.DictReader(f) if dt.date.fromisoformat(row["updated_at"]) < cutoff
            ]
        print(f"{len(expired)} documents updated before {cutoff} are past retention")
        return expired

    VikingDBDeleteOperator(
        task_id="delete_expired",
        collection_name="{{ params.collection }}",
        ids=find_expired_ids(),
    )


vikingdb_retention()
