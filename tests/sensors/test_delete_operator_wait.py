"""VikingDBDeleteOperator(wait_for_index=...) outside a DAG run: the sensor's wait, after the delete."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest

from airflow_provider_vikingdb._compat import AirflowFailException, TaskDeferred
from airflow_provider_vikingdb.hooks.vikingdb import DELETE_PATH, FETCH_IN_INDEX_PATH, SEARCH_RANDOM_PATH
from airflow_provider_vikingdb.operators.vikingdb import (
    DELETE_SUMMARY_KEY,
    IndexNotSyncedError,
    VikingDBDeleteOperator,
)
from airflow_provider_vikingdb.triggers.vikingdb import VikingDBIndexSyncTrigger

SECRET = "SK-operator-wait-1b7e"
SUMMARY_KEYS = {
    "target",
    "ids_requested",
    "ids_deleted",
    "batches",
    "del_all",
    "throttled",
    "retries",
    "last_request_id",
    "dry_run",
    "deleted_at",
}
WAIT_KEYS = {
    "index_proof",
    "index_name",
    "index_synced",
    "index_checked_ids",
    "index_sampled",
    "index_looks",
    "index_wait_seconds",
}


class FakeTI:
    """Just the XCom part of a task instance."""

    map_index = -1

    def __init__(self):
        self.xcom: dict[str, object] = {}

    def xcom_push(self, key, value):
        self.xcom[key] = value

    def xcom_pull(self, task_ids=None, key="return_value", map_indexes=None):
        return self.xcom.get(key)


@pytest.fixture
def server(vikingdb_server_factory, monkeypatch):
    srv = vikingdb_server_factory(collections=("test_coll",), fields={"test_coll": {"n": "int64"}}, sk=SECRET)
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", srv.connection_json())
    srv.load("test_coll", [{"id": f"r{n}", "n": n} for n in range(30)])
    return srv


def op(**kwargs) -> VikingDBDeleteOperator:
    defaults = {
        "task_id": "delete",
        "collection_name": "test_coll",
        "ids": ["r1", "r2"],
        "wait_for_index": "test_coll_index",
        "index_poke_interval": 0.1,
    }
    return VikingDBDeleteOperator(**{**defaults, **kwargs})


def paths(server):
    return [r.path for r in server.requests]


def test_wait_for_index_is_templated_and_off_by_default():
    assert "wait_for_index" in VikingDBDeleteOperator.template_fields
    plain = VikingDBDeleteOperator(task_id="d", collection_name="c", ids=["a"])
    assert plain.wait_for_index is None and plain.deferrable is False
    assert (plain.index_poke_interval, plain.index_timeout, plain.max_checked_ids) == (5.0, None, 1000)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"index_poke_interval": -1}, "index_poke_interval must be a non-negative number"),
        ({"index_timeout": "soon"}, "index_timeout must be a non-negative number"),
        ({"index_settle": float("nan")}, "index_settle must be a non-negative number"),
        ({"index_settle": dt.timedelta(seconds=-1)}, r"got datetime.timedelta\(days=-1, seconds=86399\)"),
        ({"max_checked_ids": 0}, "max_checked_ids must be a positive integer"),
    ],
)
def test_bad_wait_arguments_fail_at_parse_time(kwargs, message):
    with pytest.raises(ValueError, match=message):
        op(**kwargs)


def test_wait_durations_can_be_timedeltas_stdlib_or_pendulum():
    # What Airflow users write for every other duration (poke_interval, timeout, retry_delay).
    import pendulum

    task = op(
        index_poke_interval=dt.timedelta(seconds=2.5),
        index_timeout=pendulum.duration(minutes=10),
        index_settle=pendulum.duration(seconds=45),
    )
    assert (task.index_poke_interval, task.index_timeout, task.index_settle) == (2.5, 600.0, 45.0)


def test_without_wait_for_index_the_summary_is_unchanged(server):
    summary = op(wait_for_index=None).execute({"ti": FakeTI()})
    assert set(summary) == SUMMARY_KEYS
    assert FETCH_IN_INDEX_PATH not in paths(server)


def test_waits_then_returns_the_delete_summary_plus_the_wait(server):
    server.index_lag = 0.4
    ti = FakeTI()
    summary = op().execute({"ti": ti})
    assert set(summary) == SUMMARY_KEYS | WAIT_KEYS
    assert summary["ids_deleted"] == 2 and summary["index_synced"] is True
    assert summary["index_looks"] >= 2 and summary["index_wait_seconds"] >= 0.3
    # one look before the delete (the ids are seen in the index), the delete, then looks until gone
    assert paths(server)[:2] == [FETCH_IN_INDEX_PATH, DELETE_PATH]
    assert paths(server).count(FETCH_IN_INDEX_PATH) >= 3
    assert summary["index_proof"] == "seen_then_gone"
    assert ti.xcom[DELETE_SUMMARY_KEY] == {k: summary[k] for k in SUMMARY_KEYS}


def test_each_look_that_waits_on_says_how_long_it_has_waited_and_will(server, caplog, capfd):
    server.index_lag = 0.4
    op(index_timeout=30).execute({"ti": FakeTI()})
    out = capfd.readouterr()
    lines = [line for line in (caplog.text + out.out + out.err).splitlines() if "looking again" in line]
    assert lines, "it never waited"
    said = r"looking again \(\d+s after the delete; gives up in (2\d|30)s\)"
    assert all(re.search(said, line) for line in lines)


def test_a_blank_index_name_fails_before_anything_is_deleted(server):
    with pytest.raises(AirflowFailException, match="wait_for_index rendered to ' '"):
        op(wait_for_index=" ").execute({"ti": FakeTI()})
    assert server.requests == []


def test_wrong_index_name_fails_before_the_delete_and_says_nothing_was_deleted(server):
    # The look made before the delete finds the mistake: a wait that cannot happen must not
    # follow a delete.
    with pytest.raises(AirflowFailException, match=r"cannot read index 'nope'.*NotFound") as info:
        op(wait_for_index="nope").execute({"ti": FakeTI()})
    assert "Nothing was deleted" in str(info.value)
    assert DELETE_PATH not in paths(server)
    assert "r1" in server.records("test_coll")


def test_wait_failing_after_the_delete_says_the_delete_was_done(server):
    server.fail_next(FETCH_IN_INDEX_PATH, status=404, code="NotFound.VikingdbIndex", after=1)
    with pytest.raises(  # a 404 index is as missing on a retry: no Airflow retry
        AirflowFailException, match=r"waiting for index 'test_coll_index' failed: .*NotFound"
    ) as info:
        op().execute({"ti": FakeTI()})
    assert "The delete itself succeeded (2 ids deleted from collection 'test_coll')" in str(info.value)
    assert "r1" not in server.records("test_coll")


def test_timeout_fails_with_the_count_still_indexed(server):
    server.index_lag = 60
    with pytest.raises(
        IndexNotSyncedError, match="2 of the 2 checked ids are still in index 'test_coll_index'"
    ):
        op(index_timeout=0.3).execute({"ti": FakeTI()})


def test_large_delete_checks_a_sample(server):
    ids = [f"r{n}" for n in range(30)]
    summary = op(ids=ids, max_checked_ids=7).execute({"ti": FakeTI()})
    before, look = [r for r in server.requests if r.path == FETCH_IN_INDEX_PATH]
    assert before.body["ids"] == look.body["ids"]  # the same sample before and after the delete
    assert len(set(look.body["ids"])) == 7 and set(look.body["ids"]) <= set(ids)
    assert (summary["index_checked_ids"], summary["index_sampled"], summary["ids_deleted"]) == (7, True, 30)


def test_del_all_waits_for_an_empty_index(server):
    server.index_lag = 0.3
    summary = op(ids=None, del_all=True).execute({"ti": FakeTI()})
    assert summary["del_all"] is True and summary["index_synced"] is True
    assert paths(server).count(SEARCH_RANDOM_PATH) >= 2
    assert summary["records_before"] == 30 and summary["index_proof"] == "seen_then_gone"


def test_del_all_default_timeout_is_longer(server, monkeypatch):
    captured = {}

    def fake_wait(check, send, *, deadline, poke_interval, log):
        import time

        captured["timeout"] = deadline - time.time()
        return True

    monkeypatch.setattr("airflow_provider_vikingdb.operators.index_wait.wait_blocking", fake_wait)
    op(ids=None, del_all=True).execute({"ti": FakeTI()})
    assert 899 < captured["timeout"] <= 900
    op().execute({"ti": FakeTI()})
    assert 599 < captured["timeout"] <= 600


def test_nothing_deleted_means_nothing_to_wait_for(server):
    summary = op(ids=[]).execute({"ti": FakeTI()})
    assert summary["index_synced"] is True and summary["index_checked_ids"] == 0
    assert server.requests == []


def test_deferrable_deletes_then_defers_and_resumes_with_the_summary(server):
    server.index_lag = 60
    ti = FakeTI()
    task = op(deferrable=True, index_timeout=90)
    with pytest.raises(TaskDeferred) as deferred:
        task.execute({"ti": ti})
    assert paths(server) == [FETCH_IN_INDEX_PATH, DELETE_PATH]  # looked once, deleted; no wait in the worker
    trigger = deferred.value.trigger
    assert isinstance(trigger, VikingDBIndexSyncTrigger)
    _, kwargs = trigger.serialize()
    assert kwargs["ids"] == ["r1", "r2"] and kwargs["index_name"] == "test_coll_index"
    assert kwargs["target"] == {"collection_name": "test_coll"}
    assert sorted(kwargs["seen"]) == ["r1", "r2"] and kwargs["settle"] == 30
    assert SECRET not in json.dumps(kwargs)
    assert ti.xcom[DELETE_SUMMARY_KEY]["ids_deleted"] == 2

    event = {
        "status": "success",
        "message": "done",
        "index_name": "test_coll_index",
        "checked": 2,
        "total_ids": 2,
        "looks": 4,
        "waited_seconds": 20.0,
    }
    summary = task.execute_complete({"ti": ti}, event)
    assert set(summary) == SUMMARY_KEYS | WAIT_KEYS
    assert summary["ids_deleted"] == 2 and summary["index_looks"] == 4
    assert summary["index_wait_seconds"] == pytest.approx(20.0, abs=0.5)


def test_execute_complete_timeout_and_error_keep_the_delete_in_the_message():
    ti = FakeTI()
    ti.xcom[DELETE_SUMMARY_KEY] = {"ids_deleted": 5, "target": "collection 'c'", "del_all": False}
    task = op(deferrable=True)
    with pytest.raises(
        IndexNotSyncedError, match=r"3 of the 5\. The delete itself succeeded \(5 ids deleted"
    ):
        task.execute_complete({"ti": ti}, {"status": "timeout", "message": "timed out after 9s: 3 of the 5"})
    event = {"status": "error", "message": "VikingDB HTTP 401 Unauthorized", "code": "Unauthorized"}
    with pytest.raises(AirflowFailException, match=r"failed: VikingDB HTTP 401.*The delete itself succeeded"):
        task.execute_complete({"ti": ti}, {**event, "http_status": 401})
