"""ETL rollback: when a load turns out bad, take back exactly what this run wrote.

``extract`` makes this run's rows; ``load`` (``VikingDBUpsertOperator``) writes them and
pushes the ids the service acknowledged (and those of a batch whose answer was lost: they
may have been written) to XCom ``written_ids``, whether it succeeds or fails part-way.
``validate`` stands in for your data checks: it fails when the ``bad_load`` param is set.
``rollback`` runs only when ``load`` or ``validate`` failed (``trigger_rule="one_failed"``)
and deletes ``load.written_ids``, nothing else, then waits until the collection's index
``{collection}_index`` no longer holds them (``wait_for_index``), so nothing downstream
still finds the bad rows.

Two ways a load goes bad:
- ``bad_load=True``: every row was written, validation rejects them; all are rolled back.
- ``bad_row=N``: row N has a ``rank`` that is not an integer; the collection declares
  ``rank`` an int64 field, so the service refuses that row's batch and the load fails
  half-way. The refused batch is not in ``written_ids`` (the service wrote none of it), the
  acknowledged ones are, and the rollback deletes exactly those.

``mark_run_failed`` keeps the run failed after a successful rollback (a run's state comes
from its last tasks), so the bad load stays visible.

``vikingdb_etl_rollback_by_filter`` is the same pipeline rolled back without the ids:
every row carries ``load_run_id`` (a string field with a scalar index in
``{collection}_index``), and the rollback deletes what the filter
``{"op": "must", "field": "load_run_id", "conds": ["{{ run_id }}"]}`` matches. A filter
sees only what the index holds, and the index shows new rows about 20 s after they were
written: when the rollback follows the load at once and finds nothing yet, it counts again
``index_settle`` (30 s) after it started, so it takes about half a minute more than the
rollback by ids.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import Param, dag, get_current_context, task

from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator, VikingDBUpsertOperator


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
            "bad_row": Param(
                None,
                type=["null", "integer"],
                minimum=0,
                description="Give row N a rank the service refuses: the load fails half-way",
            ),
        },
        tags=["vikingdb", "example"],
    )
    def pipeline():
        @task
        def extract() -> list[dict]:
            context = get_current_context()
            params = context["params"]
            batch = context["run_id"].replace(":", "").replace("+", "")[-24:]
            rows = [
                {
                    "id": f"load-{batch}-{n:05d}",
                    "title": f"row {n} of {batch}",
                    "source": "etl",
                    "rank": n,
                    "load_run_id": context["run_id"],
                }
                for n in range(int(params["rows"]))
            ]
            if params["bad_row"] is not None and params["bad_row"] < len(rows):
                rows[params["bad_row"]]["rank"] = "not a number"  # JSON-valid; the service refuses it
            return rows

        load = VikingDBUpsertOperator(
            task_id="load",
            collection_name="{{ params.collection }}",
            records=extract(),
            ttl=dt.timedelta(days=90),  # the simplest retention: the service deletes them in 90 days
        )

        @task
        def validate(summary: dict) -> None:
            params = get_current_context()["params"]
            if params["bad_load"]:
                raise ValueError(
                    f"validation failed for the {summary['ids_written']} rows of this load (bad_load=True)"
                )
            print(f"{summary['ids_written']} rows validated")

        checked = validate(load.output)
        if by_filter:
            rollback = VikingDBDeleteOperator(
                task_id="rollback",
                collection_name="{{ params.collection }}",
                # What this run wrote, found in the index: no list of ids needed.
                filter={"op": "must", "field": "load_run_id", "conds": ["{{ run_id }}"]},
                index_name="{{ params.collection }}_index",
                trigger_rule="one_failed",
            )
            [load, checked] >> rollback
        else:
            rollback = VikingDBDeleteOperator(
                task_id="rollback",
                collection_name="{{ params.collection }}",
                ids=load.written_ids,  # what the load wrote, even if it failed half-way
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

        [load, checked] >> mark_run_failed()

    return pipeline()


etl_rollback("vikingdb_etl_rollback", by_filter=False)
etl_rollback("vikingdb_etl_rollback_by_filter", by_filter=True)
