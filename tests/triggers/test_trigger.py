"""VikingDBIndexSyncTrigger on its own: serialize() and run() against the local server (asyncio)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import pytest

from airflow_provider_vikingdb.hooks.vikingdb import FETCH_IN_INDEX_PATH, SEARCH_RANDOM_PATH
from airflow_provider_vikingdb.triggers.vikingdb import VikingDBIndexSyncTrigger

SECRET = "SK-trigger-never-serialized-93e1"
TARGET = {"collection_name": "test_coll"}


@pytest.fixture
def server(vikingdb_server_factory, monkeypatch):
    srv = vikingdb_server_factory(collections=("test_coll", "test_coll_int:id:int64"), sk=SECRET)
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", srv.connection_json())
    srv.load("test_coll", [{"id": f"r{i}", "title": "x"} for i in range(150)])
    return srv


def make(ids=("r1", "r2"), *, timeout=10.0, poke_interval=0.1, **kwargs) -> VikingDBIndexSyncTrigger:
    defaults = {
        "target": TARGET,
        "index_name": "test_coll_index",
        "ids": None if ids is None else list(ids),
        "deadline": time.time() + timeout,
        "poke_interval": poke_interval,
        "deleted_at": 0.0,  # the delete is long past: absence alone is proof (the settle rule)
    }
    return VikingDBIndexSyncTrigger(**{**defaults, **kwargs})


#: how long after its deadline a trigger may still be running before a test calls it stuck: one
#: poke interval, a request's retries... far less than this. A trigger that ignored its deadline
#: would otherwise hang the suite instead of failing it.
OVERDUE = 30.0


def first_event(trigger: VikingDBIndexSyncTrigger):
    async def go():
        left = trigger.deadline - time.time() + OVERDUE
        try:
            return await asyncio.wait_for(anext(trigger.run()), left)
        except asyncio.TimeoutError:
            pytest.fail(f"no event {OVERDUE:g} s after the trigger's deadline (docs/sensor.md: Timeout)")

    return asyncio.run(go()).payload


def looks(server, path=FETCH_IN_INDEX_PATH):
    return [r for r in server.requests if r.path == path]


def delete_now(server, ids):
    """Delete over HTTP (so the index lag applies), as the operator does."""
    from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook

    VikingDBHook().delete(ids, collection_name="test_coll")
    server.clear_requests()


# ---- serialize ----


def test_serialize_round_trips_and_holds_no_secret(server):
    trigger = make(ids=["a", 7], vikingdb_conn_id="vikingdb_default", started_at=1.0, total_ids=5000)
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_vikingdb.triggers.vikingdb.VikingDBIndexSyncTrigger"
    assert set(kwargs) == {
        "vikingdb_conn_id",
        "target",
        "index_name",
        "ids",
        "deadline",
        "deleted_at",
        "since",
        "settle",
        "seen",
        "seen_records",
        "poke_interval",
        "started_at",
        "total_ids",
    }
    assert kwargs["ids"] == ["a", 7] and kwargs["total_ids"] == 5000
    assert VikingDBIndexSyncTrigger(**kwargs).serialize() == (classpath, kwargs)
    # Airflow stores the kwargs with its serde: nothing secret may be in them
    try:
        from airflow.sdk.serde import serialize
    except ImportError:  # Airflow 3.1
        from airflow.serialization.serde import serialize

    stored = json.dumps(serialize(kwargs))
    for text in (repr(trigger.serialize()), repr(trigger.__dict__), stored):
        assert SECRET not in text
        assert "password" not in text and "api_key" not in text


def test_serialize_del_all_has_no_ids():
    _, kwargs = make(ids=None).serialize()
    assert kwargs["ids"] is None and kwargs["total_ids"] == 0


# ---- run ----


def test_waits_until_the_ids_leave_the_index(server):
    server.index_lag = 1.0
    delete_now(server, ["r1", "r2"])
    event = first_event(make(ids=["r1", "r2"]))
    assert event["status"] == "success", event
    assert (event["checked"], event["still_indexed"], event["del_all"]) == (2, 0, False)
    assert event["looks"] >= 2
    assert event["waited_seconds"] >= 0.8
    assert event["target"] == "collection 'test_coll'" and event["index_name"] == "test_coll_index"
    sent = looks(server)
    assert len(sent) == event["looks"]
    assert all(r.status == 200 and r.auth_ok for r in sent)


def test_the_connection_is_read_with_airflows_async_api_not_the_sync_one(server, monkeypatch):
    # The sync read, run in a thread (as it was), kills Airflow 3.1's trigger runner: the thread's
    # supervisor call races the runner's own (apache/airflow#64620; scripts/real_airflow.py
    # --venv .venv-lower shows it). The trigger must only use the async read.
    from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook

    def sync_read(*args, **kwargs):
        raise AssertionError("the trigger read its connection synchronously")

    monkeypatch.setattr(VikingDBHook, "get_connection", classmethod(sync_read))
    event = first_event(make(ids=["not-there"]))
    assert event["status"] == "success", event


def test_each_attempt_is_signed_over_the_exact_bytes_sent(server):
    server.index_lag = 0.5
    delete_now(server, ["r1"])
    assert first_event(make(ids=["r1"]))["status"] == "success"
    dates = set()
    for r in looks(server):
        assert r.auth_ok
        headers = {k.lower(): v for k, v in r.headers.items()}
        assert headers["authorization"].startswith("HMAC-SHA256 Credential=AK/")
        body = json.dumps(r.body, separators=(",", ":"), ensure_ascii=False).encode()
        assert headers["x-content-sha256"] == hashlib.sha256(body).hexdigest()
        dates.add(headers["x-date"])
    assert dates  # fresh X-Date per attempt (several within one second share it)


def test_ids_seen_gone_are_not_asked_about_again_and_batches_hold_at_most_100(server):
    ids = [f"r{i}" for i in range(150)]
    server.index_lag = 0.6
    delete_now(server, ids[:120])  # r120..r149 stay in the index for good
    event = first_event(make(ids=ids, timeout=1.5, poke_interval=0.2))
    assert event["status"] == "timeout"
    assert (event["checked"], event["still_indexed"]) == (150, 30)
    assert event["first_still_indexed"] == ["r120", "r121", "r122", "r123", "r124"]
    sent = looks(server)
    assert [len(r.body["ids"]) for r in sent[:2]] == [100, 50]
    assert [len(r.body["ids"]) for r in sent[-1:]] == [30]
    assert all(r.body["output_fields"] == [] for r in sent)
    assert "30 of the 150 checked ids are still in index 'test_coll_index'" in event["message"]


def test_timeout_event_counts_what_is_still_indexed(server):
    server.index_lag = 60
    delete_now(server, ["r1", "r2", "r3"])
    started = time.time()
    event = first_event(make(ids=["r1", "r2", "r3"], timeout=0.5, poke_interval=0.2))
    assert time.time() - started < 3
    assert event["status"] == "timeout"
    assert event["still_indexed"] == 3 and event["looks"] >= 2
    assert event["message"].startswith("timed out after")
    assert (
        "3 of the 3 checked ids are still in index 'test_coll_index' of collection 'test_coll'"
        in (event["message"])
    )


def test_del_all_waits_for_an_empty_random_search(server):
    server.index_lag = 1.0
    from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook

    VikingDBHook().delete(del_all=True, collection_name="test_coll")
    server.clear_requests()
    event = first_event(make(ids=None))
    assert event["status"] == "success", event
    assert event["del_all"] is True and event["looks"] >= 2
    searches = looks(server, SEARCH_RANDOM_PATH)
    assert len(searches) == event["looks"]
    assert all(1 <= r.body["limit"] <= 10 for r in searches)
    assert server.index_records("test_coll") == {}


def test_del_all_timeout_says_the_index_still_returns_records(server):
    event = first_event(make(ids=None, timeout=0.3))
    assert event["status"] == "timeout"
    assert "still returned records after del_all (10 in a random search of up to 10" in event["message"]


def test_int64_ids(server):
    server.load("test_coll_int", [{"id": n} for n in (1, 2, 2**62)])
    server.index_lag = 0.3
    from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook

    VikingDBHook().delete([2**62], collection_name="test_coll_int")
    event = first_event(
        make(ids=[2**62], target={"collection_name": "test_coll_int"}, index_name="test_coll_int_index")
    )
    assert event["status"] == "success", event


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 503, "code": "ServiceUnavailable"},
        {"status": 429, "code": "TooManyRequests"},
        {"status": 502, "body": "<html>bad gateway</html>"},
    ],
)
def test_transient_errors_are_logged_and_retried(server, fault, caplog, capfd):
    # The trigger sends through the hook's request core: transient answers are retried
    # there, with the same budget and log lines as in the worker.
    delete_now(server, ["r1"])
    server.fail_next(FETCH_IN_INDEX_PATH, times=2, **fault)
    event = first_event(make(ids=["r1"]))
    assert event["status"] == "success", event
    assert [r.status for r in looks(server)] == [fault["status"], fault["status"], 200]
    assert all(r.auth_ok for r in looks(server))  # every attempt signed anew
    out = capfd.readouterr()
    logged = caplog.text + out.out + out.err
    if fault["status"] == 429:  # a throttle storm warns of the first, then of every tenth
        assert logged.count(f"{FETCH_IN_INDEX_PATH}: 429 ") == 1 and "throttle retry 1/" in logged
    else:
        assert logged.count(f"{FETCH_IN_INDEX_PATH}: {fault['status']} ") == 2
        assert "retry 1/" in logged and "retry 2/" in logged


def test_transient_errors_past_the_retry_budget_are_polled_again(server, monkeypatch, caplog, capfd):
    conn = json.loads(server.connection_json())
    conn["extra"]["max_retries"] = 0
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))
    delete_now(server, ["r1"])
    server.fail_next(FETCH_IN_INDEX_PATH, times=2, status=503, code="ServiceUnavailable")
    event = first_event(make(ids=["r1"]))
    assert event["status"] == "success", event
    assert [r.status for r in looks(server)] == [503, 503, 200]
    out = capfd.readouterr()
    logged = caplog.text + out.out + out.err
    assert logged.count("Index check failed for now, polling again") == 2
    assert "HTTP 503" in logged


def test_dropped_connection_is_transient(server):
    delete_now(server, ["r1"])
    server.drop_next(FETCH_IN_INDEX_PATH)
    event = first_event(make(ids=["r1"]))
    assert event["status"] == "success", event
    assert [r.status for r in looks(server)] == [None, 200]


def test_unknown_index_is_permanent(server):
    event = first_event(make(index_name="no_such_index"))
    assert event["status"] == "error"
    assert event["http_status"] == 404 and event["code"].startswith("NotFound")
    assert event["request_id"] and event["request_id"] in event["message"]
    assert len(looks(server)) == 1  # not polled again


@pytest.mark.parametrize("status", [400, 401, 403])
def test_other_4xx_are_permanent(server, status):
    server.fail_next(FETCH_IN_INDEX_PATH, status=status, code="InvalidParameter", message="nope")
    event = first_event(make())
    assert event["status"] == "error" and event["http_status"] == status
    assert len(looks(server)) == 1


def test_wrong_secret_key_fails_with_the_auth_error(vikingdb_server_factory, monkeypatch):
    srv = vikingdb_server_factory(collections=("test_coll",), sk=SECRET)
    conn = json.loads(srv.connection_json())
    conn["password"] = "SK-wrong-but-long-enough"
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))
    event = first_event(make())
    assert event["status"] == "error" and event["http_status"] == 401
    assert "credentials were rejected" in event["message"]


def test_missing_connection_is_an_error_event(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", raising=False)
    event = first_event(make(vikingdb_conn_id="no_such_conn_for_trigger"))
    assert event["status"] == "error"
    assert "cannot use connection 'no_such_conn_for_trigger'" in event["message"]


def test_run_does_not_block_the_event_loop(server):
    """Other coroutines keep running while the trigger waits (it sleeps with asyncio, reads in threads)."""
    server.index_lag = 60
    delete_now(server, ["r1"])

    async def go():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.02)
                ticks += 1

        task = asyncio.create_task(ticker())
        event = await asyncio.wait_for(anext(make(ids=["r1"], timeout=0.6, poke_interval=0.2).run()), OVERDUE)
        task.cancel()
        return event, ticks

    event, ticks = asyncio.run(go())
    assert event.payload["status"] == "timeout"
    assert ticks >= 15
