"""VikingDBDeleteOperator: what fails at DAG parse time, and what fails before anything is sent."""

from __future__ import annotations

import pytest

from airflow_provider_vikingdb._compat import AirflowFailException
from airflow_provider_vikingdb.hooks.vikingdb import DELETE_PATH
from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator, parse_del_all


def make(**kwargs):
    kwargs.setdefault("task_id", "delete")
    return VikingDBDeleteOperator(**kwargs)


@pytest.mark.parametrize("batch_size", [0, 101, -5, 2.5, "50", True])
def test_batch_size_outside_1_to_100_fails_at_parse_time(batch_size):
    with pytest.raises(ValueError, match="batch_size must be an integer from 1 to 100"):
        make(collection_name="c", ids=["a"], batch_size=batch_size)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"collection_name": "c", "resource_id": "r", "ids": ["a"]}, "exactly one of collection_name or"),
        ({"ids": ["a"]}, "exactly one of collection_name or resource_id"),
        ({"collection_name": "c", "ids": ["a"], "del_all": True}, "not both"),
        ({"collection_name": "c"}, "nothing to delete"),
        ({"collection_name": "c", "ids": ["a"], "max_concurrency": 0}, "max_concurrency"),
    ],
)
def test_contradictions_fail_at_parse_time(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_template_fields_are_the_documented_ones():
    assert set(VikingDBDeleteOperator.template_fields) >= {"collection_name", "resource_id", "ids", "del_all"}


@pytest.mark.parametrize(
    ("value", "expected"), [(True, True), (False, False), ("TRUE", True), (" false ", False)]
)
def test_del_all_accepts_bools_and_their_text(value, expected):
    assert parse_del_all(value) is expected


@pytest.mark.parametrize("value", ["yes", "1", 1, None, ""])
def test_del_all_refuses_anything_else(value):
    with pytest.raises(ValueError, match="del_all must be"):
        parse_del_all(value)


def test_ids_none_at_run_time_fails_and_sends_nothing(vikingdb_connection):
    op = make(collection_name="test_coll", ids=["a"])
    op.ids = None  # e.g. a template rendered as a native None
    with pytest.raises(AirflowFailException, match=r"ids is None.*\.output") as info:
        op.execute({})
    assert vikingdb_connection.requests == []
    assert str(info.value).endswith("sets the dependency. Nothing was sent.")  # one period, not two


@pytest.mark.parametrize(("name", "rid"), [("", ""), ("None", None), ("c", "r")])
def test_rendered_target_must_be_exactly_one(vikingdb_connection, name, rid):
    op = make(collection_name="test_coll", ids=["a"])
    op.collection_name, op.resource_id = name, rid
    with pytest.raises(AirflowFailException, match="exactly one of collection_name or resource_id"):
        op.execute({})
    assert vikingdb_connection.requests == []


def test_execute_returns_the_summary(vikingdb_connection):
    server = vikingdb_connection
    server.load("test_coll_int", [{"id": n} for n in range(1, 151)])
    op = make(resource_id=server.resource_id("test_coll_int"), ids=range(1, 121), batch_size=50)
    summary = op.execute({})
    assert summary["ids_requested"] == 120 and summary["ids_deleted"] == 120
    assert summary["batches"] == 3 and summary["del_all"] is False
    assert summary["last_request_id"] in {r.request_id for r in server.requests}
    assert sorted(r.ids_count for r in server.requests if r.path == DELETE_PATH) == [20, 50, 50]
    assert sorted(server.records("test_coll_int")) == list(range(121, 151))


# ---- on_kill (SIGTERM) ----


def test_on_kill_stops_the_work_only_while_it_runs():
    import threading

    from airflow_provider_vikingdb._compat import AirflowTaskTerminated
    from airflow_provider_vikingdb.operators.vikingdb import VikingDBUpsertOperator

    for op in (
        VikingDBDeleteOperator(task_id="d", collection_name="c", ids=["a"]),
        VikingDBUpsertOperator(task_id="u", collection_name="c", records=[{"id": "a"}]),
    ):
        op.on_kill()  # before (and after: Airflow calls it after an execution timeout too): nothing
        with pytest.raises(AirflowTaskTerminated, match=r"received SIGTERM"), op._killable():
            op.on_kill()
        op.on_kill()
        with op._killable():  # only the main thread, where Airflow's signal handler runs, is stopped
            thread = threading.Thread(target=op.on_kill)  # an exception there would be printed, not raised
            thread.start()
            thread.join()
            assert op._executing  # still running: nothing was stopped
