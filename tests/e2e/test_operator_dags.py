"""VikingDBDeleteOperator in real DAG runs (dag.test) against the local server over real HTTP."""

from __future__ import annotations

import json

import pytest

from airflow_provider_vikingdb.hooks.vikingdb import DELETE_PATH
from tests.e2e.conftest import run_dag

pytestmark = pytest.mark.e2e

SECRET = "SK-e2e-do-not-leak-7f3a9c"


@pytest.fixture
def server(vikingdb_server_factory, monkeypatch):
    srv = vikingdb_server_factory(collections=("test_coll", "test_coll_int:id:int64"), sk=SECRET)
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", srv.connection_json())
    srv.load("test_coll", [{"id": i} for i in ["a", "b", "c", "m1", "m2", "m3", "keep"]])
    return srv


def sent_ids(server):
    return [r.body["ids"] for r in server.requests if r.path == DELETE_PATH and r.status == 200]


def test_xcomarg_list_with_repeats_is_deduplicated_and_batched(server):
    ids = [f"x{i}" for i in range(230)] + ["x0", "x1"]
    server.load("test_coll", [{"id": f"x{i}"} for i in range(230)])
    result = run_dag("e2e_xcomarg", conf={"ids": ids})
    assert result.state == "success", result
    assert sorted(len(b) for b in sent_ids(server)) == [30, 100, 100]  # concurrent: any order
    summary = result.xcom["delete"]
    assert (summary["ids_deleted"], summary["batches"], summary["del_all"]) == (230, 3, False)
    assert not any(k.startswith("x") for k in server.records("test_coll"))


def test_mapped_task_lazy_sequence(server):
    result = run_dag("e2e_mapped")
    assert result.state == "success", result
    assert sent_ids(server) == [["m1", "m2", "m3"]]
    assert result.xcom["delete"]["ids_deleted"] == 3
    assert not {"m1", "m2", "m3"} & set(server.records("test_coll"))


def test_mapped_deletes_keep_to_the_rows_per_second_given_in_partial(server):
    # Each chunk: 300 ids in 3 batches at 500 rows/s, 0.2 s apart (unpaced: a few ms in all).
    server.load("test_coll", [{"id": f"chunk{k}_{i}"} for k in range(2) for i in range(300)])
    result = run_dag("e2e_mapped_capped")
    assert result.state == "success", result
    assert not any(k.startswith("chunk") for k in server.records("test_coll"))
    deletes = [r for r in server.requests if r.path == DELETE_PATH]
    for chunk in ("chunk0_", "chunk1_"):
        sent = [r.time for r in deletes if r.body["ids"][0].startswith(chunk)]
        assert len(sent) == 3
        assert max(sent) - min(sent) >= 0.35


def test_jinja_text_of_a_list_is_parsed_back_into_ids(server, capfd):
    result = run_dag("e2e_jinja", conf={"ids": ["a", "b"]})
    assert "not upstream of this task" not in capfd.readouterr().out  # the dependency is set
    assert result.state == "success", result
    assert sent_ids(server) == [["a", "b"]]
    assert sorted(server.records("test_coll")) == ["c", "keep", "m1", "m2", "m3"]


def test_jinja_rendering_none_fails_and_sends_nothing(server, capfd):
    result = run_dag("e2e_jinja_no_dependency")
    assert result.state == "failed", result
    assert result.tasks["delete"] == "failed"
    assert [r for r in server.requests if r.path == DELETE_PATH] == []
    out = capfd.readouterr()
    assert "ids rendered to 'None'" in out.out + out.err
    assert ".output" in out.out + out.err  # the fix is named
    # and the cause was warned about: the task it pulls from is not upstream
    assert "ids pulls XCom from 'find_ids', which is not upstream of this task" in out.out + out.err


def test_upstream_returning_none_fails_and_sends_nothing(server, capfd):
    result = run_dag("e2e_jinja", conf={"ids": None})
    assert result.tasks["delete"] == "failed"
    assert [r for r in server.requests if r.path == DELETE_PATH] == []


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (["a", True], "ids[1] is a bool"),
        (["a", "b", 1.5], "ids[2] = 1.5 is a float"),
        (["a", None], "ids[1] = None"),
        ([{"id": "a"}], "ids[0] = {'id': 'a'} is a dict"),
        (["a", ["b"]], "ids[1] = ['b'] is a list"),
        ([2**63], "outside the int64 range"),
    ],
)
def test_bad_ids_fail_the_task_before_anything_is_sent(server, capfd, ids, message):
    result = run_dag("e2e_xcomarg", conf={"ids": ids})
    assert result.tasks["delete"] == "failed"
    assert [r for r in server.requests if r.path == DELETE_PATH] == []
    assert "a" in server.records("test_coll")
    out = capfd.readouterr()
    assert message in out.out + out.err


def test_empty_list_is_a_success_with_nothing_sent(server, capfd):
    result = run_dag("e2e_xcomarg", conf={"ids": []})
    assert result.state == "success", result
    assert [r for r in server.requests if r.path == DELETE_PATH] == []
    assert result.xcom["delete"]["ids_deleted"] == 0 and result.xcom["delete"]["batches"] == 0
    assert "nothing sent" in capfd.readouterr().out


@pytest.mark.parametrize("flag", ["true", "TRUE", "True"])
def test_templated_del_all_true_empties_the_collection_with_one_request(server, capfd, flag):
    result = run_dag("e2e_del_all_flag", conf={"purge": flag})
    assert result.state == "success", result
    deletes = [r for r in server.requests if r.path == DELETE_PATH]
    assert [r.body for r in deletes] == [{"collection_name": "test_coll", "del_all": True}]
    assert server.records("test_coll") == {}
    assert result.xcom["delete"]["del_all"] is True
    assert "deleting EVERY record of collection 'test_coll'" in capfd.readouterr().out


def test_templated_del_all_false_is_refused_since_no_ids_are_given(server):
    result = run_dag("e2e_del_all_flag", conf={"purge": "FALSE"})
    assert result.tasks["delete"] == "failed"
    assert server.requests == []


def test_templated_del_all_garbage_is_an_error(server, capfd):
    result = run_dag("e2e_del_all_flag", conf={"purge": "yes please"})
    assert result.tasks["delete"] == "failed"
    assert server.requests == []
    assert "del_all must be True/False" in capfd.readouterr().out


def test_permanent_error_stops_at_once_and_says_how_far_it_got(server, capfd, monkeypatch):
    ids = [f"p{i:03d}" for i in range(500)]
    server.load("test_coll", [{"id": i} for i in ids])
    # One batch in flight at a time: exactly two batches land, the third gets the scripted 400.
    monkeypatch.setattr("airflow_provider_vikingdb.operators._hook.DEFAULT_MAX_CONCURRENCY", 1)
    server.fail_next(DELETE_PATH, after=2, status=400, code="InvalidParameter", message="ids rejected")
    result = run_dag("e2e_xcomarg", conf={"ids": ids})
    assert result.tasks["delete"] == "failed"
    assert len([r for r in server.requests if r.path == DELETE_PATH]) == 3  # 4th and 5th never sent
    assert sorted(server.records("test_coll"))[:1] == ["a"]
    assert len([k for k in server.records("test_coll") if k.startswith("p")]) == 300
    text = capfd.readouterr().out
    assert "InvalidParameter" in text and "ids rejected" in text and "request_id=" in text
    assert "200 of 500 ids acknowledged in 2 of 5 batches; outcome unknown: 0 ids;" in text
    assert "not deleted (refused, or never sent): 300 ids" in text
    assert "batch 3 of 5" in text


def test_transient_errors_are_retried_and_the_task_succeeds(server):
    server.fail_next(DELETE_PATH, status=503, code="ServiceUnavailable")
    server.fail_next(DELETE_PATH, status=429, code="TooManyRequests")
    result = run_dag("e2e_xcomarg", conf={"ids": ["a", "b"]})
    assert result.state == "success", result
    assert result.xcom["delete"]["retries"] == 2
    assert "a" not in server.records("test_coll")


def test_no_secret_in_task_logs_rendered_fields_or_xcom(server, capfd):
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.utils.session import create_session

    server.fail_next(DELETE_PATH, status=503, code="ServiceUnavailable")
    result = run_dag("e2e_jinja", conf={"ids": ["a", "b"]})
    assert result.state == "success", result
    out = capfd.readouterr()
    with create_session() as session:
        rendered = [
            json.dumps(r.rendered_fields, default=str) for r in session.query(RenderedTaskInstanceFields)
        ]
    assert rendered  # the rendered fields were stored and are checked
    haystack = "\n".join([out.out, out.err, *rendered, json.dumps(result.xcom, default=str)])
    assert "retry 1/" in haystack  # the hook's warnings were in the captured logs
    assert SECRET not in haystack
