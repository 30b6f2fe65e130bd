"""ETL rollback: when a load turns out bad, take back exactly what this run wrote.

``plan_load`` decides the ids of this run's rows *before* anything is written,
so the rollback knows them even if ``load`` itself fails half-way. ``validate``
stands in for your data checks: it fails when the ``bad_load`` param is set.
``rollback`` runs only when ``load`` or ``validate`` failed
(``trigger_rule="one_failed"``) and deletes this run's ids and nothing else,
then waits until the collection's index ``{collection}_index`` no longer holds
them (``wait_for_index``), so nothing downstream still finds the bad rows.
``mark_run_failed`` keeps the run failed after a successful rollback (a run's
state comes from its last tasks), so the bad load stays visible.

``vikingdb_etl_rollback_by_filter`` is the same pipeline rolled back without the
ids: every row carries ``load_run_id`` (a string field with a scalar index in
``{collection}_index``), and the rollback deletes what the filter
``{"op": "must", "field": "load_run_id", "conds": ["{{ run_id }}"]}`` matches. A
filter sees only what the index holds, and the index shows new rows about 20 s
after they were written: roll back by filter when the load has had time to be
indexed, by ids when the rollback may follow the load at once.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, get_current_context, task

from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook
from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator


def etl_rollback(dag_id: str, *, by_filter: bool):
    @dag(
        dag_id=dag_id,
        schedule=None,
        start_date=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
        catchup=False,
        params={
            "collection": Param("documents", type="string"),
            "rows": Param(250, type="integer", minimum=1, description="Rows this load writes"),
            "bad_load": Param(False, type="boolean", description="Make validation fail, to see the rollback"),
        },
        tags=["vikingdb", "example"],
    )
    def pipeline():
        @task
        def plan_load() -> list[str]:
            context = get_current_context()
            batch = context["run_id"].replace(":", "").replace("+", "")[-24:]
            return [f"load-{batch}-{n:05d}" for n in range(int(context["params"]["rows"]))]

        @task
        def load(ids: list[str]) -> int:
            context = get_current_context()
            params = context["params"]
            rows = [
                {"id": i, "title": f"loaded {i}", "source": "etl", "load_run_id": context["run_id"]}
                for i in ids
            ]
            result = VikingDBHook().upsert(rows, collection_name=params["collection"])
            return result.ids_done

        @task
        def validate(written: int) -> None:
            params = get_current_context()["params"]
            if params["bad_load"]:
                raise ValueError(f"validation failed for the {written} rows of this load (bad_load=True)")
            print(f"{written} rows validated")

        ids = plan_load()
        checked = validate(load(ids))
        if by_filter:
            rollback = VikingDBDeleteOperator(
                task_id="rollback",
                collection_name="{{ params.collection }}",
                # What this run wrote, found in the index: no list of ids needed.
                filter={"op": "must", "field": "load_run_id", "conds": ["{{ run_id }}"]},
                index_name="{{ params.collection }}_index",
                trigger_rule="one_failed",
            )
        else:
            rollback = VikingDBDeleteOperator(
                task_id="rollback",
                collection_name="{{ params.collection }}",
                ids=ids,
                trigger_rule="one_failed",
                # Searches keep returning deleted records until the index catches up (~20 s):
                # the rollback is done only when the index no longer holds this run's ids.
                # deferrable=True would wait in the triggerer instead of holding a worker slot.
                wait_for_index="{{ params.collection }}_index",
            )
        checked >> rollback

        @task(trigger_rule="one_failed", retries=0)
        def mark_run_failed() -> None:
            raise RuntimeError("the load was rolled back: see the failed upstream task for why")

        checked >> mark_run_failed()

    return pipeline()


etl_rollback("vikingdb_etl_rollback", by_filter=False)
etl_rollback("vikingdb_etl_rollback_by_filter", by_filter=True)
