"""The README's example of a user's test, run as written (it must keep working)."""

from __future__ import annotations

from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator


def test_cleanup_deletes_the_expired_ids(vikingdb_connection):
    server = vikingdb_connection  # AIRFLOW_CONN_VIKINGDB_DEFAULT points at it
    server.load("test_coll", [{"id": "a"}, {"id": "b"}, {"id": "keep"}])
    server.fail_next("data/delete", status=503)  # the first attempt hits a transient error

    op = VikingDBDeleteOperator(task_id="delete", collection_name="test_coll", ids=["a", "b"])
    summary = op.execute({})

    assert summary["ids_deleted"] == 2 and summary["retries"] == 1
    assert set(server.records("test_coll")) == {"keep"}
    deletes = [r for r in server.requests if r.path == "/api/vikingdb/data/delete"]
    assert [(r.status, r.ids_count, r.auth_ok) for r in deletes] == [(503, 2, True), (200, 2, True)]
