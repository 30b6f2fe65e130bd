"""Concurrent batches against the local server: failure rules, throttling, pool reuse. No timing asserts."""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from airflow_provider_vikingdb.exceptions import VikingDBConfigError, VikingDBError
from airflow_provider_vikingdb.hooks.vikingdb import DELETE_PATH, VikingDBBatchError, VikingDBHook
from airflow_provider_vikingdb.ratelimit import limiter_for
from airflow_provider_vikingdb.task_failure import retry_can_fix

SK = "SK-concurrency-0123456789"


@pytest.fixture
def make_server(vikingdb_server_factory, monkeypatch):
    def make(**kwargs):
        srv = vikingdb_server_factory(collections=("test_coll",), ak="AK", sk=SK, **kwargs)
        monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", srv.connection_json())
        return srv

    return make


def deletes(server):
    return [r for r in server.requests if r.path == DELETE_PATH]


def load(server, count: int) -> list[str]:
    ids = [f"id{i:05d}" for i in range(count)]
    server.load("test_coll", [{"id": i} for i in ids])
    return ids


@pytest.mark.parametrize("concurrency", [4, 8])
def test_permanent_error_with_concurrency_says_exactly_what_was_deleted(make_server, concurrency):
    server = make_server(latency_ms=20)
    ids = load(server, 3000)
    hook = VikingDBHook(max_concurrency=concurrency)
    hook._sleep = lambda seconds: None
    original = hook.request
    sent = []
    failure_seen = threading.Event()
    taken_after_failure = []

    def request(path, body=None, **kw):
        if failure_seen.is_set():
            taken_after_failure.append(body["ids"][0])
        sent.append(1)
        if len(sent) == 7:  # the next request to reach the server fails for good
            server.fail_next(DELETE_PATH, status=400, code="InvalidParameter", message="scripted")
        try:
            return original(path, body, **kw)
        except VikingDBError as exc:
            if exc.http_status == 400:
                failure_seen.set()
            raise

    hook.request = request
    with pytest.raises(VikingDBBatchError) as info:
        hook.delete(ids, collection_name="test_coll")
    err = info.value
    left = set(server.records("test_coll"))
    assert err.code == "InvalidParameter" and len(err.failed_batches) == 1
    # done_ids are exactly the ids no longer in the collection, not_done_ids exactly those still there
    assert set(err.done_ids) == set(ids) - left
    assert set(err.not_done_ids) == left
    assert sorted(err.done_ids + err.not_done_ids) == ids
    assert err.result.ids_done == len(err.done_ids) == 100 * err.result.batches
    # the failed batch's ids were not deleted (a 4xx applies nothing)
    (failed,) = [r for r in deletes(server) if r.status == 400]
    assert set(failed.body["ids"]) <= left
    # Once a worker had the failure, no worker took a new batch: only those in flight finished.
    assert failure_seen.is_set() and taken_after_failure == []
    log = sorted(deletes(server), key=lambda r: r.time)
    assert len(log) <= log.index(failed) + 1 + 2 * (concurrency - 1)
    assert len(log) < 30  # of 30 batches
    hook.close()


def test_a_400_beside_a_503_decides_the_task_fails_for_good_and_both_are_named(make_server, monkeypatch):
    """Two batches in flight fail together: batch 2 on a 503 (retries used up), batch 3 on a 400.

    A retry of the task would fail on the 400 again, so the error's cause is the 400 (Airflow fails
    the task at once rather than waiting ``retry_delay`` to learn it), and the message names both.
    """
    server = make_server()
    conn = json.loads(server.connection_json())
    conn["extra"]["max_retries"] = 0
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))
    ids = load(server, 500)
    hook = VikingDBHook(max_concurrency=2)
    original = hook.request
    both_taken = threading.Barrier(2, timeout=10)
    first_failed = threading.Event()

    def request(path, body=None, **kw):
        first = body["ids"][0]
        if first == ids[100]:  # batch 2: answered first, with a 503
            both_taken.wait()
            server.fail_next(DELETE_PATH, status=503, code="ServiceUnavailable", message="scripted")
            try:
                return original(path, body, **kw)
            finally:
                first_failed.set()
        if first == ids[200]:  # batch 3: answered second, with a 400
            both_taken.wait()
            assert first_failed.wait(10)
            server.fail_next(DELETE_PATH, status=400, code="InvalidParameter", message="scripted")
        return original(path, body, **kw)

    hook.request = request
    with pytest.raises(VikingDBBatchError) as info:
        hook.delete(ids, collection_name="test_coll")
    err = info.value
    assert err.failed_batches == [2, 3]
    assert {n: e.http_status for n, e in err.failures.items()} == {2: 503, 3: 400}
    assert err.cause.http_status == 400 and err.http_status == 400
    assert not retry_can_fix(err)  # the task fails at once: another try would meet the 400 again
    message = str(err)
    assert "batch 3 of 5 failed with VikingDB HTTP 400 InvalidParameter" in message
    assert "Also failed, in flight at the same time: batch 2: HTTP 503 ServiceUnavailable." in message
    assert "Fix the cause above" in message
    # What was and was not deleted is still exact.
    left = set(server.records("test_coll"))
    assert err.done_ids == ids[:100] and set(err.not_done_ids) == left == set(ids[100:])
    hook.close()


def test_transient_error_with_concurrency_is_retried_and_nothing_is_lost(make_server):
    server = make_server(latency_ms=5)
    ids = load(server, 2000)
    server.fail_next(DELETE_PATH, times=3, status=503, code="ServiceUnavailable")
    hook = VikingDBHook(max_concurrency=8)
    hook._sleep = lambda seconds: None
    result = hook.delete(ids, collection_name="test_coll")
    assert result.ids_deleted == 2000 and result.retries == 3
    assert server.records("test_coll") == {}
    hook.close()


def test_throttled_batches_are_retried_never_lost_never_failures(make_server):
    server = make_server(quota=4000, latency_ms=10)
    ids = load(server, 10_000)
    hook = VikingDBHook(max_concurrency=8)
    result = hook.delete(ids, collection_name="test_coll")
    statuses = [r.status for r in deletes(server)]
    assert server.records("test_coll") == {}
    assert result.ids_deleted == 10_000 and result.batches == 100
    assert statuses.count(429) > 0  # the quota was hit (the burst ran out) ...
    assert result.throttled == statuses.count(429)  # ... and every throttle was retried
    assert statuses.count(200) == 100
    limiter = limiter_for(hook.config.base_url, "test_coll", None)
    assert limiter.rate is not None  # it learned to pace
    hook.close()


def test_without_a_quota_the_start_ramps_up_and_nothing_is_throttled(make_server):
    server = make_server(latency_ms=5)
    ids = load(server, 3000)
    hook = VikingDBHook(max_concurrency=8)
    waits = []
    hook._sleep = lambda seconds: (waits.append(seconds), time.sleep(seconds))
    result = hook.delete(ids, collection_name="test_coll")
    assert result.ids_deleted == 3000 and result.throttled == 0
    limiter = limiter_for(hook.config.base_url, "test_coll", None)
    assert limiter.mode == "starting"  # never throttled: no reference was ever set
    # paced from the documented 1500 rows/s (a request of 100 every 1/15 s), faster and
    # faster: the first wait is about one such interval, later ones shorter
    assert waits and max(waits) <= 1 / 15 + 0.01
    hook.close()


def test_rows_per_second_caps_the_pace(make_server):
    server = make_server()
    ids = load(server, 500)
    hook = VikingDBHook(max_concurrency=4, rows_per_second=1000)
    waits = []
    hook._sleep = waits.append  # the limiter's waits go through the hook's sleep
    hook.delete(ids, collection_name="test_coll")
    assert server.records("test_coll") == {}
    assert waits and max(waits) > 0
    assert limiter_for(hook.config.base_url, "test_coll", 1000).rate == 1000
    hook.close()


@pytest.mark.parametrize(("hook_concurrency", "delete_concurrency"), [(8, None), (4, 16)])
def test_concurrent_batches_reuse_the_pools_connections(make_server, hook_concurrency, delete_concurrency):
    server = make_server(latency_ms=10)
    ids = load(server, 6000)
    hook = VikingDBHook(max_concurrency=hook_concurrency)
    hook.delete(ids, collection_name="test_coll", max_concurrency=delete_concurrency)
    hook.delete(ids[:1000], collection_name="test_coll", max_concurrency=delete_concurrency)
    concurrency = delete_concurrency or hook_concurrency
    adapter = hook.session.get_adapter(hook.config.base_url)
    assert adapter._pool_maxsize >= concurrency  # every worker's connection fits in the pool
    # connections are kept and reused, not opened per request and discarded
    connections = {r.client for r in deletes(server)}
    assert len(connections) <= concurrency
    assert len(deletes(server)) == 70
    hook.close()


def test_the_operator_shares_its_hooks_pool():
    from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator

    op = VikingDBDeleteOperator(task_id="t", collection_name="c", ids=["a"], max_concurrency=12)
    hook = op.get_hook()
    assert hook.max_concurrency == 12  # the pool is sized for it: delete() needs no second pool


def test_a_connection_the_server_closed_while_idle_is_replaced_without_a_retry(make_server):
    from airflow_provider_vikingdb.local import LocalVikingDB

    server = make_server()
    ids = load(server, 300)
    hook = VikingDBHook(max_concurrency=4)
    assert hook.delete(ids[:200], collection_name="test_coll").retries == 0
    port = server.port
    server.stop()  # closes every kept-alive connection
    again = LocalVikingDB(collections=("test_coll",), ak="AK", sk=SK, port=port).start()
    try:
        again.load("test_coll", [{"id": i} for i in ids[200:]])
        result = hook.delete(ids[200:], collection_name="test_coll")
        assert result.retries == 0 and result.ids_deleted == 100
        assert again.records("test_coll") == {}
    finally:
        again.stop()
        hook.close()


def test_a_header_with_a_line_break_is_refused_not_sent(make_server, monkeypatch):
    import json

    server = make_server()
    conn = json.loads(server.connection_json())
    conn["extra"]["session_token"] = "token\r\nX-Injected: yes"
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))
    hook = VikingDBHook()
    with pytest.raises(VikingDBConfigError, match="extra 'session_token' contains a line break"):
        hook.request(DELETE_PATH, {"collection_name": "test_coll", "ids": ["a"]})
    assert deletes(server) == []
    hook.close()


def test_a_batch_the_quota_can_never_cover_fails_saying_it_gave_up_and_why(make_server, caplog, capfd):
    server = make_server(quota=50)  # 100 ids a batch: never covered
    ids = load(server, 100)
    hook = VikingDBHook(throttle_retries=12)
    with pytest.raises(VikingDBBatchError) as failed:
        hook.delete(ids, collection_name="test_coll")
    text = str(failed.value)
    assert re.search(r"gave up after 12 throttled retries in \d+\.\ds: a batch of 100 rows may be more", text)
    assert "lower batch_size" in text
    assert len([r for r in server.requests if r.path == DELETE_PATH]) == 13
    out, err = capfd.readouterr()
    retry_lines = [line for line in (caplog.text + out + err).splitlines() if "throttle retry" in line]
    # paced by the limiter, not by a fixed delay; a warning for the 1st, 10th and 11th, not all 12
    assert all("when the collection's rate limiter allows" in line for line in retry_lines)
    warned = {
        re.search(r"throttle retry (\d+)/12", line).group(1)
        for line in retry_lines
        if "warning" in line.lower()
    }
    assert warned == {"1", "10", "11"}
    hook.close()
