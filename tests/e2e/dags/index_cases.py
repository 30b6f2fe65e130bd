"""DAGs that delete and then wait for the index: the sensor and ``wait_for_index``, poke and deferrable.

tests/e2e/test_index_sync.py runs them against a local server with an index lag. Intervals
and timeouts are short so the suite stays fast; each DAG exists once per mode because
``deferrable`` is not a template field.
"""

from __future__ import annotations

import datetime as dt

from airflow.sdk import DAG, Param, task

from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator
from airflow_provider_vikingdb.sensors.vikingdb import VikingDBIndexSyncSensor

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
COMMON = {"schedule": None, "start_date": START, "catchup": False, "tags": ["vikingdb-e2e"]}
PARAMS = {"ids": Param(["a", "b"], type="array"), "collection": "test_coll"}
INDEX = "{{ params.collection }}_index"
POKE = 0.5
#: a look 4 s after the delete is proof even for ids never seen (the tests release the index sooner)
SETTLE = 4.0


@task
def load_rows(params=None):
    """A load seconds before the rollback: the rows have not reached the index yet."""
    from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook

    ids = params["ids"]
    VikingDBHook().upsert([{"id": i, "title": "new"} for i in ids], collection_name="test_coll")
    return ids


for mode in ("poke", "deferrable"):
    deferrable = mode == "deferrable"

    # delete (no wait), then the sensor, fed the same ids through an XComArg
    with DAG(f"index_sensor_{mode}", params=PARAMS, **COMMON):

        @task
        def find_ids(params=None):
            return params["ids"]

        ids = find_ids()
        delete = VikingDBDeleteOperator(task_id="delete", collection_name="{{ params.collection }}", ids=ids)
        delete >> VikingDBIndexSyncSensor(
            task_id="wait",
            collection_name="{{ params.collection }}",
            index_name=INDEX,
            ids=ids,
            poke_interval=POKE,
            timeout=30,
            deferrable=deferrable,
        )

    # the operator waits itself
    with DAG(f"index_delete_wait_{mode}", params=PARAMS, **COMMON):

        @task
        def find_ids(params=None):
            return params["ids"]

        VikingDBDeleteOperator(
            task_id="delete",
            collection_name="{{ params.collection }}",
            ids=find_ids(),
            wait_for_index=INDEX,
            index_poke_interval=POKE,
            index_timeout=30,
            deferrable=deferrable,
        )

    # ... and gives up after a short timeout (the tests use a long lag)
    with DAG(f"index_delete_timeout_{mode}", params=PARAMS, **COMMON):

        @task
        def find_ids(params=None):
            return params["ids"]

        VikingDBDeleteOperator(
            task_id="delete",
            collection_name="{{ params.collection }}",
            ids=find_ids(),
            wait_for_index=INDEX,
            index_poke_interval=POKE,
            index_timeout=1.5,
            deferrable=deferrable,
        )

    with DAG(f"index_sensor_timeout_{mode}", params=PARAMS, **COMMON):

        @task
        def find_ids(params=None):
            return params["ids"]

        ids = find_ids()
        delete = VikingDBDeleteOperator(task_id="delete", collection_name="test_coll", ids=ids)
        delete >> VikingDBIndexSyncSensor(
            task_id="wait",
            collection_name="test_coll",
            index_name="test_coll_index",
            ids=ids,
            poke_interval=POKE,
            timeout=1.5,
            deferrable=deferrable,
        )

    # the rollback case: rows loaded a moment ago are deleted at once; the wait must not end
    # before the index has applied the delete, although the rows are absent from it at first
    with DAG(f"index_load_then_delete_{mode}", params=PARAMS, **COMMON):
        VikingDBDeleteOperator(
            task_id="delete",
            collection_name="test_coll",
            ids=load_rows(),
            wait_for_index="test_coll_index",
            index_poke_interval=POKE,
            index_timeout=30,
            index_settle=SETTLE,
            deferrable=deferrable,
        )

    with DAG(f"index_load_then_sensor_{mode}", params=PARAMS, **COMMON):
        loaded = load_rows()
        delete = VikingDBDeleteOperator(task_id="delete", collection_name="test_coll", ids=loaded)
        delete >> VikingDBIndexSyncSensor(
            task_id="wait",
            collection_name="test_coll",
            index_name="test_coll_index",
            ids=loaded,
            settle=SETTLE,
            poke_interval=POKE,
            timeout=30,
            deferrable=deferrable,
        )

    # del_all, then wait until a random search of the index returns nothing
    with DAG(f"index_del_all_{mode}", params={"collection": "test_coll"}, **COMMON):
        VikingDBDeleteOperator(
            task_id="delete",
            collection_name="{{ params.collection }}",
            del_all=True,
            wait_for_index=INDEX,
            index_poke_interval=POKE,
            index_timeout=30,
            deferrable=deferrable,
        )

    with DAG(f"index_del_all_sensor_{mode}", params={"purge": Param("true", type="string")}, **COMMON):
        delete = VikingDBDeleteOperator(task_id="delete", collection_name="test_coll", del_all=True)
        delete >> VikingDBIndexSyncSensor(
            task_id="wait",
            collection_name="test_coll",
            index_name="test_coll_index",
            del_all="{{ params.purge }}",
            poke_interval=POKE,
            deferrable=deferrable,
        )

# the sensor with a Jinja string for ids, as the operator takes them
with DAG("index_sensor_jinja", params=PARAMS, **COMMON):

    @task
    def find_ids(params=None):
        return params["ids"]

    found = find_ids()
    delete = VikingDBDeleteOperator(task_id="delete", collection_name="test_coll", ids=found)
    delete >> VikingDBIndexSyncSensor(
        task_id="wait",
        resource_id="vdb-test_coll",
        index_name="test_coll_index",
        ids="{{ ti.xcom_pull(task_ids='find_ids') }}",
        poke_interval=POKE,
        timeout=30,
    )
