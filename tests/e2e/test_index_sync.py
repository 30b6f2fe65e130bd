"""Waiting for the index in real DAG runs (dag.test) against a local server whose index lags.

The ``server``'s index is held (it shows nothing written after the DAG starts) until the
waiter has looked at it twice after the delete, then catches up at once. So every wait
here first finds the index behind and succeeds only at a later look, however long the
task takes to start on a loaded machine (a fixed lag raced with that start-up: a first
look 3.5 s after the delete already found a 3 s lag caught up). dag.test() of Airflow 3
runs a deferred task's trigger inline (``[DAG TEST] running trigger in line``), so the
deferrable cases exercise the trigger's own HTTP client (httpx) for real.
"""

from __future__ import annotations

import re
import threading
import time

import pytest

from airflow_provider_vikingdb.hooks.vikingdb import DELETE_PATH, FETCH_IN_INDEX_PATH, SEARCH_RANDOM_PATH
from tests.e2e.conftest import run_dag

pytestmark = pytest.mark.e2e

#: the slow server's lag, and the held index's before its release: longer than any wait here
LAG = 60.0
#: answered looks after the delete before the held index catches up
LOOKS_BEFORE_RELEASE = 2
#: the settle time of tests/e2e/dags/index_cases.py (SETTLE)
SETTLE = 4.0
SECRET = "SK-index-sync-do-not-leak-51c2"
MODES = ["poke", "deferrable"]


def _start(factory, monkeypatch, lag: float):
    srv = factory(collections=("test_coll", "test_coll_int:id:int64"), sk=SECRET, index_lag=lag)
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", srv.connection_json())
    srv.load("test_coll", [{"id": i, "title": i} for i in ["a", "b", "c", "keep"]])
    return srv


class HeldIndex:
    """Holds the server's index until the waiter has looked ``LOOKS_BEFORE_RELEASE`` times after
    the delete (answered 200), then lets it catch up at once; ``released_at`` is that time."""

    def __init__(self, srv):
        self.srv = srv
        self.released_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.01):
            log = self.srv.requests
            deletes = [r.time for r in log if r.path == DELETE_PATH]
            looks = [
                r
                for r in log
                if r.path in (FETCH_IN_INDEX_PATH, SEARCH_RANDOM_PATH)
                and r.status == 200
                and deletes
                and r.time > deletes[0]
            ]
            if len(looks) >= LOOKS_BEFORE_RELEASE:
                self.released_at = time.time()
                self.srv.index_lag = 0.0  # every change written so far comes due now
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def server(vikingdb_server_factory, monkeypatch):
    srv = _start(vikingdb_server_factory, monkeypatch, LAG)
    srv.held = HeldIndex(srv)
    yield srv
    srv.held.stop()


@pytest.fixture
def slow_server(vikingdb_server_factory, monkeypatch):
    """An index far behind: every short wait times out."""
    return _start(vikingdb_server_factory, monkeypatch, LAG)


def _requests(server, path):
    return [r for r in server.requests if r.path == path]


def assert_it_waited(server, mode, path=FETCH_IN_INDEX_PATH):
    """The index was looked at while it was behind and again after it caught up, all signed and accepted."""
    looks = _requests(server, path)
    released = server.held.released_at
    assert released is not None, f"it did not wait: {len(looks)} look(s), the first already passed"
    assert len([r for r in looks if r.time < released]) >= LOOKS_BEFORE_RELEASE  # it found the index behind
    assert looks[-1].time >= released  # ... and ended only at a look after the index caught up
    assert all(r.status == 200 and r.auth_ok for r in looks)
    agents = {r.headers.get("User-Agent", "").split("/")[0] for r in looks}
    if mode == "deferrable":
        assert "python-httpx" in agents  # the trigger looked
    else:
        assert agents == {"python-requests"}  # the worker looked (the hook)


@pytest.mark.parametrize("mode", MODES)
def test_sensor_waits_until_the_deleted_ids_leave_the_index(server, mode):
    result = run_dag(f"index_sensor_{mode}", conf={"ids": ["a", "b"]})
    assert result.state == "success", result
    assert result.tasks == {"find_ids": "success", "delete": "success", "wait": "success"}
    assert_it_waited(server, mode)
    assert not {"a", "b"} & set(server.index_records("test_coll"))
    summary = result.xcom["wait"]
    assert summary["index_synced"] is True
    assert summary["index_name"] == "test_coll_index"
    assert (summary["index_checked_ids"], summary["index_total_ids"]) == (2, 2)
    assert summary["index_sampled"] is False and summary["del_all"] is False
    assert summary["index_looks"] >= 1
    assert summary["index_wait_seconds"] > 0  # how long depends on when the task started: see above


def test_sensor_takes_ids_from_a_jinja_string_like_the_operator(server):
    result = run_dag("index_sensor_jinja", conf={"ids": ["a", "c"]})
    assert result.state == "success", result
    assert_it_waited(server, "poke")
    assert {tuple(r.body["ids"]) for r in _requests(server, FETCH_IN_INDEX_PATH)} == {("a", "c")}
    assert {r.body["resource_id"] for r in _requests(server, FETCH_IN_INDEX_PATH)} == {"vdb-test_coll"}


@pytest.mark.parametrize("mode", MODES)
def test_delete_operator_waits_for_the_index_then_returns_its_summary(server, mode):
    result = run_dag(f"index_delete_wait_{mode}", conf={"ids": ["a", "b", "a"]})
    assert result.state == "success", result
    assert result.tasks["delete"] == "success"
    assert_it_waited(server, mode)
    summary = result.xcom["delete"]
    # the summary it always returned ...
    assert (summary["ids_requested"], summary["ids_deleted"], summary["batches"]) == (2, 2, 1)
    assert summary["target"] == "collection 'test_coll'"
    assert summary["last_request_id"] == _requests(server, DELETE_PATH)[0].request_id
    # ... and the wait
    assert summary["index_synced"] is True and summary["index_name"] == "test_coll_index"
    assert summary["index_checked_ids"] == 2 and summary["index_sampled"] is False
    assert summary["index_wait_seconds"] > 0  # how long depends on when the task started: see above
    assert sorted(server.index_records("test_coll")) == ["c", "keep"]
    # long indexed: seen before the delete, so the first look that finds them gone ends the wait
    assert summary["index_proof"] == "seen_then_gone"
    gone_looks = [r for r in _requests(server, FETCH_IN_INDEX_PATH) if r.time >= server.held.released_at]
    assert len(gone_looks) == 1


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("waiter", ["delete", "sensor"])
def test_rows_loaded_just_before_the_delete_are_waited_for_until_the_index_applied_it(server, mode, waiter):
    # The rows are absent from the index at first because it has not indexed them yet (and
    # never show: their upsert and delete come due together); an absent id proves nothing
    # until it was seen there or the settle time has passed.
    result = run_dag(f"index_load_then_{waiter}_{mode}", conf={"ids": ["new1", "new2"]})
    assert result.state == "success", result
    (delete,) = _requests(server, DELETE_PATH)
    looks = [r for r in _requests(server, FETCH_IN_INDEX_PATH) if r.time > delete.time]
    assert looks and looks[-1].time - delete.time >= SETTLE - 0.05  # not ended by an absence before it
    summary = result.xcom["delete" if waiter == "delete" else "wait"]
    assert summary["index_synced"] is True
    assert summary["index_proof"] == "settled"
    assert not {"new1", "new2"} & set(server.index_records("test_coll"))
    assert not {"new1", "new2"} & set(server.records("test_coll"))


@pytest.mark.parametrize("mode", MODES)
def test_operator_wait_timeout_fails_with_the_count_still_indexed(slow_server, mode, capfd):
    result = run_dag(f"index_delete_timeout_{mode}", conf={"ids": ["a", "b"]})
    assert result.state == "failed", result
    assert result.tasks["delete"] == "failed"
    assert "a" not in slow_server.records("test_coll")  # the delete itself was done
    assert len(_requests(slow_server, FETCH_IN_INDEX_PATH)) > 1
    out = capfd.readouterr().out
    assert re.search(
        r"IndexNotSyncedError: VikingDBDeleteOperator 'delete': timed out after [\d.]+s: 2 of the 2 checked "
        r"ids are still in index 'test_coll_index' of collection 'test_coll'; first: 'a', 'b'\. "
        r"The delete itself succeeded \(2 ids deleted from collection 'test_coll'\)",
        out,
    ), out[-3000:]


@pytest.mark.parametrize("mode", MODES)
def test_sensor_timeout_fails_with_the_count_still_indexed(slow_server, mode, capfd):
    result = run_dag(f"index_sensor_timeout_{mode}", conf={"ids": ["a", "b", "c"]})
    assert result.state == "failed", result
    assert result.tasks == {"find_ids": "success", "delete": "success", "wait": "failed"}
    out = capfd.readouterr().out
    assert re.search(
        r"AirflowSensorTimeout: .*timed out.* 3 of the 3 checked ids are still in index 'test_coll_index'",
        out,
    ), out[-3000:]


@pytest.mark.parametrize("mode", MODES)
def test_del_all_wait_succeeds_once_the_index_is_empty(server, mode):
    result = run_dag(f"index_del_all_{mode}")
    assert result.state == "success", result
    assert_it_waited(server, mode, path=SEARCH_RANDOM_PATH)
    assert server.index_records("test_coll") == {}
    searches = _requests(server, SEARCH_RANDOM_PATH)
    assert {r.body["limit"] for r in searches} <= set(range(1, 11))
    summary = result.xcom["delete"]
    assert summary["del_all"] is True and summary["index_synced"] is True
    assert summary["index_checked_ids"] == 0 and summary["index_wait_seconds"] > 0


@pytest.mark.parametrize("mode", MODES)
def test_del_all_sensor_with_a_templated_flag(server, mode):
    result = run_dag(f"index_del_all_sensor_{mode}", conf={"purge": "TRUE"})
    assert result.state == "success", result
    assert_it_waited(server, mode, path=SEARCH_RANDOM_PATH)
    assert result.xcom["wait"]["del_all"] is True


def test_del_all_timeout_says_the_index_still_returned_records(slow_server, capfd, monkeypatch):
    monkeypatch.setattr("airflow_provider_vikingdb.index_sync.DEFAULT_DEL_ALL_TIMEOUT", 1.0)
    result = run_dag("index_del_all_sensor_poke", conf={"purge": "true"})
    assert result.tasks["wait"] == "failed"
    out = capfd.readouterr().out
    assert "timeout 1s" in out  # the del_all default, settled once the flag is rendered
    assert re.search(
        r"AirflowSensorTimeout: .*index 'test_coll_index' of collection 'test_coll' still returned records "
        r"after del_all \(4 in a random search of up to 10",
        out,
    ), out[-3000:]


def test_transient_errors_while_waiting_are_polled_again(server):
    server.fail_next(FETCH_IN_INDEX_PATH, status=503, code="ServiceUnavailable")
    server.fail_next(FETCH_IN_INDEX_PATH, status=429, code="TooManyRequests")
    result = run_dag("index_delete_wait_deferrable", conf={"ids": ["a"]})
    assert result.state == "success", result
    statuses = [r.status for r in _requests(server, FETCH_IN_INDEX_PATH)]
    assert statuses[:2] == [503, 429] and statuses[-1] == 200


def test_no_secret_in_logs_or_xcom(server, capfd):
    result = run_dag("index_delete_wait_deferrable", conf={"ids": ["a"]})
    assert result.state == "success", result
    out = capfd.readouterr()
    assert SECRET not in out.out + out.err
    assert SECRET not in repr(result.xcom)
