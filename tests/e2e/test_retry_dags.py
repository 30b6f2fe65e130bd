"""Airflow ``retries`` in real DAG runs (dag.test): a failure a retry can fix goes up_for_retry and
heals; one it cannot fix (wrong credentials) fails on the first try, whatever ``retries`` says."""

from __future__ import annotations

import datetime as dt
import json
import re
import time

import pytest

from airflow_provider_vikingdb.transport import AGG_PATH, DELETE_PATH, SEARCH_SCALAR_PATH, UPSERT_PATH
from tests.e2e.conftest import LOGICAL_DATE, run_dag

pytestmark = pytest.mark.e2e

SECRET = "SK-e2e-retry-right-5d1e"
WRONG = "SK-e2e-retry-WRONG-77aa"
RECORDS = 400


def logical_date() -> dt.datetime:
    return LOGICAL_DATE + dt.timedelta(microseconds=time.time_ns() // 1000 % 86_400_000_000)


@pytest.fixture
def server(vikingdb_server_factory):
    return vikingdb_server_factory(
        collections=("events",), fields={"events": {"created_at": "int64"}}, index_lag=0.5, sk=SECRET
    )


def connect(server, monkeypatch, *, password=SECRET):
    """The connection, with one hook retry per request (so a few 503s outlast the hook's budget)."""
    conn = json.loads(server.connection_json())
    conn["password"] = password
    conn["extra"]["max_retries"] = 1
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))


def load_events(server, when):
    start = int(when.timestamp())
    rows = [{"id": f"e{i:04d}", "created_at": start - (i % 360) * 86400 - 7} for i in range(RECORDS)]
    server.load("events", rows)
    cutoff = start - 90 * 86400
    return {r["id"] for r in rows if r["created_at"] < cutoff}, {r["id"] for r in rows}


def answered(server, path, status):
    return [r for r in server.requests if r.path == path and r.status == status]


@pytest.mark.parametrize(
    ("path", "said"),
    [
        (AGG_PATH, "cannot count the records matching the filter"),
        (SEARCH_SCALAR_PATH, "searching index 'events_index' failed"),
        (DELETE_PATH, "deleting page 1 ("),
    ],
    ids=["count", "search", "delete"],
)
def test_retention_heals_on_the_airflow_retry_after_503s_beyond_the_hooks_retries(
    server, monkeypatch, capfd, path, said
):
    connect(server, monkeypatch)
    when = logical_date()
    old, every = load_events(server, when)
    # Two 503s: the first attempt and the hook's one retry of the first call on that path.
    server.fail_next(path, status=503, code="ServiceUnavailable", times=2)
    result = run_dag("e2e_retry_retention", logical_date=when)
    assert result.state == "success", result
    assert result.tasks["delete"] == "success"
    assert result.tries["delete"] == 2  # try 1 went up_for_retry, try 2 finished
    assert len(answered(server, path, 503)) == 2
    assert set(server.records("events")) == every - old
    assert result.xcom["delete"]["remaining"] == 0
    out = capfd.readouterr().out
    assert said in out and "HTTP 503 ServiceUnavailable" in out  # try 1's message, as before
    if path == AGG_PATH:
        assert "Nothing was deleted" in out
    else:
        assert "0 ids deleted from collection 'events' in" in out  # what was done before it stopped


def test_retention_with_a_wrong_secret_key_fails_on_the_first_try(server, monkeypatch, capfd):
    connect(server, monkeypatch, password=WRONG)
    when = logical_date()
    _, every = load_events(server, when)
    result = run_dag("e2e_retry_retention_twice", logical_date=when)
    assert result.tasks["delete"] == "failed"
    assert result.tries["delete"] == 1  # retries=2 not used: a retry would be refused the same way
    assert [r.status for r in server.requests] == [403] or [r.status for r in server.requests] == [401]
    assert set(server.records("events")) == every
    out = capfd.readouterr().out
    assert "credentials were rejected" in out and "up_for_retry" not in out.lower()
    assert WRONG not in out


def refused(server):
    return [r for r in server.requests if r.status in (401, 403)]


def test_delete_by_ids_with_a_wrong_secret_key_fails_on_the_first_try(server, monkeypatch, capfd):
    connect(server, monkeypatch, password=WRONG)
    server.load("events", [{"id": f"r{n}", "created_at": n} for n in range(250)])
    result = run_dag("e2e_retry_ids", conf={"ids": [f"r{n}" for n in range(250)]})
    assert result.tasks["delete"] == "failed"
    assert result.tries["delete"] == 1
    assert len(server.requests) == 1 and len(refused(server)) == 1  # the first batch, alone
    assert len(server.records("events")) == 250
    out = capfd.readouterr().out
    assert "credentials were rejected" in out and "not deleted (refused, or never sent): 250 ids" in out
    assert WRONG not in out


def test_delete_by_ids_heals_on_the_airflow_retry_after_503s_beyond_the_hooks_retries(server, monkeypatch):
    connect(server, monkeypatch)
    server.load("events", [{"id": f"r{n}", "created_at": n} for n in range(250)])
    server.fail_next(DELETE_PATH, status=503, code="ServiceUnavailable", times=2)
    result = run_dag("e2e_retry_ids", conf={"ids": [f"r{n}" for n in range(250)]})
    assert result.tasks["delete"] == "success", result
    assert result.tries["delete"] == 2
    assert server.records("events") == {}


def test_a_receipt_store_that_did_not_answer_heals_on_the_airflow_retry(server, monkeypatch, flaky_store):
    connect(server, monkeypatch)
    ids = [f"r{n}" for n in range(250)]
    server.load("events", [{"id": i, "created_at": 1} for i in ids])
    uri = "flaky://flaky-bucket/heals.jsonl"
    flaky_store.failures = [ConnectionError("connection reset by the store")]
    result = run_dag("e2e_retry_receipt", conf={"ids": ids, "receipt": uri})
    assert result.tasks["delete"] == "success", result
    assert result.tries["delete"] == 2  # try 1 could not open the receipt and deleted nothing
    assert server.records("events") == {}
    (written,) = flaky_store.receipts()  # where Airflow's path class put it (3.1 spells it its own way)
    lines = [json.loads(line) for line in flaky_store.cat(written).splitlines()]
    assert [line["kind"] for line in lines] == ["batch"] * 3 + ["final"]
    assert sorted(i for line in lines[:-1] for i in line["ids"]) == sorted(ids)
    assert lines[-1]["outcome"] == "success" and lines[-1]["run"]["try_number"] == 2


def test_a_receipt_store_that_refuses_fails_on_the_first_try_with_nothing_deleted(
    server, monkeypatch, flaky_store, capfd
):
    connect(server, monkeypatch)
    ids = [f"r{n}" for n in range(250)]
    server.load("events", [{"id": i, "created_at": 1} for i in ids])
    flaky_store.failures = [PermissionError("access denied")] * 3
    result = run_dag("e2e_retry_receipt", conf={"ids": ids, "receipt": "flaky://flaky-bucket/denied.jsonl"})
    assert result.tasks["delete"] == "failed"
    assert result.tries["delete"] == 1  # a refusal is refused again: retries=2 is not used
    assert [r.path for r in server.requests if r.path == DELETE_PATH] == []
    assert len(server.records("events")) == 250
    out = capfd.readouterr().out
    assert re.search(r"cannot write the receipt flaky:\S*flaky-bucket/denied\.jsonl: PermissionError", out)
    assert "Nothing was deleted" in out


def test_upsert_with_a_wrong_secret_key_fails_on_the_first_try(server, monkeypatch, capfd):
    connect(server, monkeypatch, password=WRONG)
    rows = [{"id": f"u{n}", "created_at": n} for n in range(250)]
    result = run_dag("e2e_retry_upsert", conf={"records": rows})
    assert result.tasks["load"] == "failed"
    assert result.tries["load"] == 1
    assert [r.path for r in refused(server)] == [UPSERT_PATH] and len(server.requests) == 1
    assert server.records("events") == {}
    assert result.xcom_keys["written_ids"]["load"] == []
    out = capfd.readouterr().out
    assert "credentials were rejected" in out and WRONG not in out


def test_a_load_retried_by_airflow_is_rolled_back_whole_whatever_each_try_wrote(server, monkeypatch, capfd):
    # Try 1 writes 3 batches, then 503s outlast the hook's retries; try 2 is refused at once.
    # Airflow clears try 1's written_ids when try 2 starts: try 2's holds every id of the input.
    connect(server, monkeypatch)
    server.load("events", [{"id": f"keep{n}", "created_at": n} for n in range(3)])
    rows = [{"id": f"u{n:04d}", "created_at": n} for n in range(1000)]
    server.fail_next(UPSERT_PATH, status=503, code="ServiceUnavailable", after=3, times=10)
    result = run_dag("e2e_retry_load_rollback", conf={"records": rows})
    assert result.tasks == {"load": "failed", "rollback": "success"}, result
    assert result.tries["load"] == 2
    written_by_try_1 = {
        row["id"]
        for r in server.requests
        if r.path == UPSERT_PATH and r.status == 200
        for row in r.body["data"]
    }
    assert len(written_by_try_1) == 300
    assert set(server.records("events")) == {"keep0", "keep1", "keep2"}  # all that any try wrote is gone
    assert result.xcom["rollback"]["ids_requested"] == 1000
    out = capfd.readouterr().out
    assert "This is try 2 of the load: an earlier try may have written any of the 1000 records" in out
