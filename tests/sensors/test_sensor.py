"""VikingDBIndexSyncSensor outside a DAG run: arguments, sampling, poke, deferral and its events."""

from __future__ import annotations

import datetime as dt
import json
import re
import time

import pytest

from airflow_provider_vikingdb._compat import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    TaskDeferred,
)
from airflow_provider_vikingdb.exceptions import VikingDBError
from airflow_provider_vikingdb.hooks.vikingdb import FETCH_IN_INDEX_PATH, VikingDBHook
from airflow_provider_vikingdb.sensors.vikingdb import VikingDBIndexSyncSensor
from airflow_provider_vikingdb.triggers.vikingdb import VikingDBIndexSyncTrigger

SECRET = "SK-sensor-unit-0a9d7c"
IDS = [f"d{n:02d}" for n in range(12)]


@pytest.fixture
def server(vikingdb_server_factory, monkeypatch):
    srv = vikingdb_server_factory(collections=("test_coll",), sk=SECRET)
    conn = json.loads(srv.connection_json())
    conn["extra"]["max_retries"] = 0  # a poke is one attempt: the sensor itself looks again
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))
    srv.load("test_coll", [{"id": i} for i in [*IDS, "keep"]])
    return srv


def sensor(**kwargs) -> VikingDBIndexSyncSensor:
    defaults = {"task_id": "wait", "collection_name": "test_coll", "index_name": "test_coll_index"}
    # No index lag in most of these tests: absent on the first look is proof only once the
    # settle time has passed, so let it be 0 unless a test is about the rule itself.
    defaults["settle"] = 0
    if "del_all" not in kwargs:
        defaults["ids"] = IDS
    return VikingDBIndexSyncSensor(**{**defaults, "poke_interval": 0.1, **kwargs})


def delete(ids):
    VikingDBHook().delete(ids, collection_name="test_coll")


def fetched(server):
    return [r for r in server.requests if r.path == FETCH_IN_INDEX_PATH]


# ---- arguments ----


def test_template_fields_match_the_operator():
    assert tuple(VikingDBIndexSyncSensor.template_fields) == (
        "collection_name",
        "resource_id",
        "index_name",
        "ids",
        "del_all",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ids": ["a"], "del_all": True}, "not both"),
        ({"ids": None}, "give the deleted ids"),
        ({"resource_id": "vdb-x"}, "exactly one of collection_name or resource_id"),
        ({"collection_name": None}, "exactly one of collection_name or resource_id"),
        ({"index_name": ""}, "give index_name"),
        ({"max_checked_ids": 0}, "max_checked_ids must be a positive integer"),
    ],
)
def test_bad_arguments_fail_at_parse_time(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sensor(**kwargs)


def test_default_timeouts_and_poke_interval():
    assert sensor().timeout == 600
    assert sensor(del_all=True).timeout == 900
    assert sensor(timeout=42).timeout == 42
    assert (
        VikingDBIndexSyncSensor(task_id="w", collection_name="c", index_name="i", ids=["a"]).poke_interval
        == 5
    )
    assert sensor().max_checked_ids == 1000 and sensor().deferrable is False


def test_deferrable_follows_airflows_default_deferrable(monkeypatch):
    from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator

    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "True")
    assert sensor().deferrable is True and sensor(deferrable=False).deferrable is False
    delete_op = VikingDBDeleteOperator(task_id="d", collection_name="c", ids=["a"], wait_for_index="i")
    assert delete_op.deferrable is True


def test_templated_del_all_settles_its_default_timeout_at_run_time(server):
    s = sensor(del_all="{{ params.purge }}")
    assert s.timeout == 600  # unknown at parse time
    s.del_all = "TRUE"  # as rendered
    server.index_lag = 0
    VikingDBHook().delete(del_all=True, collection_name="test_coll")
    result = s.execute({})
    assert s.timeout == 900
    assert result["del_all"] is True and result["index_synced"] is True


@pytest.mark.parametrize(
    ("ids", "message"),
    [("None", "ids rendered to 'None'"), (["a", True], "ids[1] is a bool"), ("[1, 2", "looks like a list")],
)
def test_bad_ids_fail_the_task_without_retry_and_send_nothing(server, ids, message):
    with pytest.raises(AirflowFailException, match=re.escape(message)):
        sensor(ids=ids).execute({})
    assert server.requests == []


def test_jinja_text_of_a_list_is_parsed_back(server):
    delete(["d00", "d01"])
    result = sensor(ids="['d00', 'd01', 'd00']").execute({})
    assert result["index_checked_ids"] == 2
    assert fetched(server)[0].body["ids"] == ["d00", "d01"]


def test_empty_ids_is_nothing_to_wait_for(server):
    result = sensor(ids=[]).execute({})
    assert result["index_synced"] is True and result["index_checked_ids"] == 0
    assert server.requests == []


# ---- sampling ----


def test_more_ids_than_the_limit_checks_a_sample_of_exactly_the_limit(server, caplog, capfd):
    delete(IDS)
    result = sensor(max_checked_ids=5).execute({})
    (look,) = fetched(server)
    assert len(look.body["ids"]) == 5 == len(set(look.body["ids"]))
    assert set(look.body["ids"]) <= set(IDS)
    assert result["index_checked_ids"] == 5 and result["index_total_ids"] == 12
    assert result["index_sampled"] is True
    out = capfd.readouterr()
    logged = caplog.text + out.out + out.err
    assert "a random sample of 5 of the 12 deleted ids (more than max_checked_ids=5" in logged


def test_up_to_the_limit_all_ids_are_checked_and_the_log_says_so(server, caplog, capfd):
    delete(IDS)
    result = sensor(max_checked_ids=12).execute({})
    assert sorted(fetched(server)[0].body["ids"]) == IDS
    assert result["index_sampled"] is False
    out = capfd.readouterr()
    assert "checking all 12 deleted ids" in caplog.text + out.out + out.err


def test_the_settle_time_is_said_to_count_from_the_sensors_start_not_the_delete(server, caplog, capfd):
    # The sensor does not know when the delete was: its messages must not claim "after the delete".
    delete(IDS[:2])
    result = sensor(ids=IDS[:2], settle=0).execute({})
    assert result["index_proof"] == "settled"
    out = capfd.readouterr()
    logged = caplog.text + out.out + out.err
    assert "absent at a look 0s or more after the sensor started" in logged
    assert "after the delete" not in logged
    with pytest.raises(TaskDeferred) as deferred:
        sensor(ids=["keep"], settle=0, deferrable=True).execute({})
    assert deferred.value.trigger.serialize()[1]["since"] == "the sensor started"


# ---- poke ----


def test_poke_is_false_while_the_index_holds_ids_then_true(server):
    server.index_lag = 0.5
    delete(["d00"])
    s = sensor(ids=["d00"])
    assert s.poke({}) is False
    time.sleep(0.6)
    assert s.poke({}) is True


def test_transient_error_in_a_poke_is_logged_and_poked_again(server):
    delete(["d00"])
    server.fail_next(FETCH_IN_INDEX_PATH, status=503)
    s = sensor(ids=["d00"])
    assert s.poke({}) is False
    assert s.poke({}) is True


def test_permanent_error_in_a_poke_fails_without_retry(server):
    with pytest.raises(AirflowFailException, match=r"cannot read index 'nope': .*NotFound") as info:
        sensor(index_name="nope").poke({})
    assert isinstance(info.value.__cause__, VikingDBError)


def test_poke_mode_timeout_says_how_many_ids_are_still_indexed(server):
    server.index_lag = 60
    delete(["d00", "d01"])
    with pytest.raises(
        AirflowSensorTimeout, match="2 of the 2 checked ids are still in index 'test_coll_index'"
    ):
        sensor(ids=["d00", "d01"], timeout=0.3).execute({})


# ---- deferrable ----


def test_deferrable_looks_once_then_defers_with_a_trigger_holding_no_secret(server):
    server.index_lag = 60
    delete(IDS)
    before = time.time()
    with pytest.raises(TaskDeferred) as deferred:
        sensor(deferrable=True, timeout=120, max_checked_ids=5).execute({})
    assert len(fetched(server)) == 1  # one look in the worker first
    trigger = deferred.value.trigger
    assert isinstance(trigger, VikingDBIndexSyncTrigger)
    assert deferred.value.method_name == "execute_complete"
    _, kwargs = trigger.serialize()
    assert len(kwargs["ids"]) == 5 and kwargs["total_ids"] == 12
    assert before + 120 <= kwargs["deadline"] <= time.time() + 120
    assert kwargs["poke_interval"] == 0.1
    assert deferred.value.timeout.total_seconds() > 120  # Airflow's timeout is only a backstop
    assert SECRET not in repr(kwargs)


def test_durations_can_be_timedeltas_and_reach_the_trigger_as_seconds(server):
    import pendulum

    server.index_lag = 60
    delete(IDS)
    with pytest.raises(TaskDeferred) as deferred:
        sensor(
            deferrable=True,
            poke_interval=dt.timedelta(seconds=0.5),
            timeout=pendulum.duration(minutes=2),
            settle=pendulum.duration(seconds=45),
        ).execute({})
    _, kwargs = deferred.value.trigger.serialize()
    assert (kwargs["poke_interval"], kwargs["settle"]) == (0.5, 45.0)  # plain floats: serializable
    with pytest.raises(ValueError, match=r"settle must be a non-negative number of seconds or a timedelta"):
        sensor(settle=dt.timedelta(seconds=-1))


def test_deferrable_returns_at_once_when_already_synced(server):
    delete(IDS)
    result = sensor(deferrable=True).execute({})
    assert result["index_synced"] is True


def test_execute_complete_success_returns_the_summary():
    event = {
        "status": "success",
        "message": "index 'i' of collection 'c' no longer holds any of the 5 checked ids",
        "target": "collection 'c'",
        "index_name": "i",
        "del_all": False,
        "checked": 5,
        "total_ids": 12,
        "still_indexed": 0,
        "looks": 3,
        "waited_seconds": 21.5,
    }
    result = sensor().execute_complete({}, event)
    assert result["index_synced"] is True and result["index_sampled"] is True
    assert (result["index_checked_ids"], result["index_total_ids"], result["index_looks"]) == (5, 12, 3)
    assert result["index_wait_seconds"] == pytest.approx(21.5, abs=0.5)


def test_execute_complete_timeout_and_error_fail_with_the_message():
    with pytest.raises(AirflowSensorTimeout, match=r"timed out after 9\.0s: 3 of the 5"):
        sensor().execute_complete({}, {"status": "timeout", "message": "timed out after 9.0s: 3 of the 5"})
    # the trigger's error event names the status: a 404 will be a 404 on a retry
    with pytest.raises(AirflowFailException, match="waiting for the index failed: VikingDB HTTP 404"):
        sensor().execute_complete(
            {},
            {
                "status": "error",
                "message": "VikingDB HTTP 404 NotFound",
                "code": "NotFound",
                "http_status": 404,
            },
        )
    # an event that names no status (the triggerer could not read the connection): this try only
    with pytest.raises(AirflowException, match="cannot use connection") as info:
        sensor().execute_complete({}, {"status": "error", "message": "cannot use connection 'x': boom"})
    assert not isinstance(info.value, AirflowFailException)
