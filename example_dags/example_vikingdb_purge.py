"""Purge: delete every record of a collection (``del_all``), by hand and on purpose only.

Trigger it with ``{"collection": "x", "confirm": "x"}``: the guard refuses to go
on unless ``confirm`` repeats the collection name. VikingDB's indexes take about
five minutes to reflect a ``del_all``.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, get_current_context, task

from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator


@dag(
    dag_id="vikingdb_purge",
    schedule=None,
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    catchup=False,
    params={
        "collection": Param("documents", type="string", description="Collection to empty"),
        "confirm": Param("", type="string", description="Type the collection name again to confirm"),
    },
    tags=["vikingdb", "example"],
)
def vikingdb_purge():
    @task
    def check_confirmation() -> None:
        try:
            from airflow.sdk.exceptions import AirflowFailException
        except ImportError:  # Airflow 3.1
            from airflow.exceptions import AirflowFailException

        params = get_current_context()["params"]
        if params["confirm"] != params["collection"]:
            raise AirflowFailException(
                f"Refusing to delete every record of {params['collection']!r}: "
                f"param 'confirm' must repeat the collection name, got {params['confirm']!r}"
            )

    check_confirmation() >> VikingDBDeleteOperator(
        task_id="delete_all",
        collection_name="{{ params.collection }}",
        del_all=True,
    )


vikingdb_purge()
