"""VikingDBUpsertOperator and deletion receipts in real DAG runs (dag.test) against the local server."""

from __future__ import annotations

import json
import re
import time

import pytest

from airflow_provider_vikingdb.hooks.vikingdb import DELETE_PATH, UPSERT_PATH
from airflow_provider_vikingdb.receipts import read_receipt
from tests.e2e.conftest import run_dag, use_extra

pytestmark = pytest.mark.e2e

SECRET = "SK-e2e-upsert-do-not-leak-41c2"


@pytest.fixture
def server(vikingdb_server_factory, monkeypatch):
    srv = vikingdb_server_factory(collections=("test_coll",), fields={"test_coll": {"n": "int64"}}, sk=SECRET)
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", srv.connection_json())
    srv.load("test_coll", [{"id": "before-1", "n": 1}, {"id": "before-2", "n": 2}])
    return srv


def upserts(server, status=None):
    return [r for r in server.requests if r.path == UPSERT_PATH and (status is None or r.status == status)]


def records(count, prefix="r"):
    return [{"id": f"{prefix}{n:04d}", "n": n, "text": f"row {n}"} for n in range(count)]


def test_250_records_with_ttl_then_validation_fails_and_the_rollback_restores_the_collection(server):
    before = server.records("test_coll")
    rows = records(250)
    result = run_dag("e2e_upsert_rollback", conf={"records": rows, "ttl": 3600, "bad": True})
    assert result.tasks["load"] == "success" and result.tasks["validate"] == "failed"
    assert result.tasks["rollback"] == "success", result
    sent = upserts(server)
    assert sorted(len(r.body["data"]) for r in sent) == [50, 100, 100]
    assert all(r.body["ttl"] == 3600 for r in sent)
    summary = result.xcom["load"]
    assert (summary["records"], summary["ids_written"], summary["batches"], summary["ttl"]) == (
        250,
        250,
        3,
        3600,
    )
    assert summary["last_request_id"] in {r.request_id for r in sent}
    assert sorted(result.xcom_keys["written_ids"]["load"]) == [r["id"] for r in rows]
    assert result.xcom["rollback"]["ids_deleted"] == 250
    assert server.records("test_coll") == before


def test_a_load_that_never_ran_leaves_nothing_to_roll_back(server, capfd):
    # The extract fails: the load is upstream_failed and pushes nothing; one_failed still runs
    # the rollback, whose ids=load.written_ids then has no XCom to read (Airflow: XComNotFound).
    # docs/operators.md: "the rollback logs that it wrote nothing and deletes nothing".
    before = server.records("test_coll")
    result = run_dag("e2e_upsert_rollback", conf={"records": records(5), "no_records": True})
    assert (result.tasks["make_records"], result.tasks["load"]) == ("failed", "upstream_failed")
    assert result.tasks["rollback"] == "success", result
    assert result.xcom["rollback"]["ids_deleted"] == 0
    assert upserts(server) == [] and [r for r in server.requests if r.path == DELETE_PATH] == []
    assert server.records("test_coll") == before
    out = capfd.readouterr()
    assert "Task 'load' never ran (it has no 'written_ids' XCom): it wrote nothing." in out.out + out.err


def test_good_load_keeps_its_records_with_their_ttl_and_skips_the_rollback(server):
    result = run_dag("e2e_upsert_rollback", conf={"records": records(120), "ttl": 3600})
    assert result.state == "success", result
    assert result.tasks["rollback"] == "skipped"
    assert len(server.records("test_coll")) == 122
    assert 3590 < server.expires_in("test_coll", "r0042") <= 3600
    assert server.expires_in("test_coll", "before-1") is None


def test_second_batch_refused_fails_naming_it_and_the_rollback_removes_exactly_what_was_written(
    server, capfd, tmp_path
):
    before = server.records("test_coll")
    server.fail_next(UPSERT_PATH, after=1, status=400, code="InvalidParameter", message="bad row")
    receipt = tmp_path / "receipts" / "rollback.jsonl"
    result = run_dag("e2e_upsert_rollback", conf={"records": records(250), "receipt": f"file://{receipt}"})
    assert result.tasks["load"] == "failed" and result.tasks["validate"] == "upstream_failed"
    assert result.tasks["rollback"] == "success", result
    refused = upserts(server, 400)
    assert len(refused) == 1
    acknowledged = [row["id"] for r in upserts(server, 200) for row in r.body["data"]]
    written = result.xcom_keys["written_ids"]["load"]
    assert sorted(written) == sorted(acknowledged) and 100 <= len(written) < 250
    failed_batch = int(refused[0].body["data"][0]["id"][1:]) // 100 + 1
    out = capfd.readouterr()
    text = out.out + out.err
    assert re.search(rf"batch {failed_batch} of 3 failed with VikingDB HTTP 400 InvalidParameter", text)
    assert f"request_id={refused[0].request_id}" in text
    assert f"holds the {len(written)} ids the service acknowledged" in text
    assert server.records("test_coll") == before
    deleted = [i for r in server.requests if r.path == DELETE_PATH and r.status == 200 for i in r.body["ids"]]
    assert sorted(deleted) == sorted(written)
    assert SECRET not in text
    # The rollback's receipt: every deleted id once, with the request that deleted it.
    lines = read_receipt(f"file://{receipt}")
    batches, final = lines[:-1], lines[-1]
    assert sorted(i for b in batches for i in b["ids"]) == sorted(written)
    request_of = {r.request_id: r.body["ids"] for r in server.requests if r.path == DELETE_PATH}
    assert all(request_of[b["request_id"]] == b["ids"] for b in batches)
    assert final["outcome"] == "success" and final["counts"]["ids_deleted"] == len(written)
    assert final["run"]["task_id"] == "rollback" and final["run"]["dag_id"] == "e2e_upsert_rollback"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"n": 1}, "records[3] has no 'id' field"),
        ({"id": True}, "records[3]['id'] is a bool"),
        ({"id": 7}, "records[3]['id'] = 7 is an int64, but records[0] has a string key"),
        ("not a dict", "records[3] = 'not a dict' is a str, not a dict"),
    ],
)
def test_bad_records_send_nothing_and_the_rollback_has_nothing_to_do(server, capfd, bad, message):
    rows = records(5)
    rows[3] = bad
    result = run_dag("e2e_upsert_rollback", conf={"records": rows})
    assert result.tasks["load"] == "failed"
    assert upserts(server) == []
    assert result.xcom_keys["written_ids"]["load"] == []
    assert result.tasks["rollback"] == "success"
    assert [r for r in server.requests if r.path == DELETE_PATH] == []
    out = capfd.readouterr()
    assert message in out.out + out.err
    assert "Nothing was sent" in out.out + out.err


def test_records_from_a_jsonl_file_are_streamed_in_batches(server, tmp_path):
    path = tmp_path / "load.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records(230, "f")))
    result = run_dag("e2e_upsert_file", conf={"path": f"file://{path}", "ttl": 60})
    assert result.tasks["load"] == "success", result
    assert result.tasks["rollback"] == "skipped"
    assert sorted(len(r.body["data"]) for r in upserts(server)) == [30, 100, 100]
    assert all(r.body["ttl"] == 60 for r in upserts(server))
    assert len(server.records("test_coll")) == 232
    assert len(result.xcom_keys["written_ids"]["load"]) == 230


def test_a_bad_line_in_the_file_sends_nothing_and_names_the_line(server, tmp_path, capfd):
    path = tmp_path / "load.jsonl"
    lines = [json.dumps(r) for r in records(150, "f")]
    lines[120] = '{"id": "f0120", "v": NaN}'
    path.write_text("\n".join(lines) + "\n")
    result = run_dag("e2e_upsert_file", conf={"path": str(path)})
    assert result.tasks["load"] == "failed"
    assert upserts(server) == []
    out = capfd.readouterr()
    assert "line 121: record['v'] is NaN" in out.out + out.err


def test_delete_receipt_lists_every_id_once_with_its_request(server, tmp_path):
    ids = [f"x{n}" for n in range(230)]
    server.load("test_coll", [{"id": i} for i in ids])
    receipt = tmp_path / "r" / "del.jsonl"
    result = run_dag("e2e_delete_receipt", conf={"ids": ids, "receipt": str(receipt)})
    assert result.state == "success", result
    lines = read_receipt(str(receipt))
    assert [line["kind"] for line in lines] == ["batch"] * 3 + ["final"]
    assert sorted(i for line in lines[:-1] for i in line["ids"]) == sorted(ids)
    request_of = {r.request_id: r.body["ids"] for r in server.requests if r.path == DELETE_PATH}
    assert all(request_of[line["request_id"]] == line["ids"] for line in lines[:-1])
    final = lines[-1]
    assert final["outcome"] == "success" and final["target"] == "collection 'test_coll'"
    assert final["counts"] == {"ids_deleted": 230, "batches": 3, "ids_requested": 230}
    assert result.xcom["delete"]["receipt"] == str(receipt)


def test_delete_receipt_of_a_run_that_failed_part_way(server, tmp_path):
    ids = [f"x{n}" for n in range(300)]
    server.load("test_coll", [{"id": i} for i in ids])
    server.fail_next(DELETE_PATH, after=1, status=400, code="InvalidParameter")
    receipt = tmp_path / "del.jsonl"
    result = run_dag("e2e_delete_receipt", conf={"ids": ids, "receipt": f"file://{receipt}"})
    assert result.tasks["delete"] == "failed"
    lines = read_receipt(f"file://{receipt}")
    acknowledged = {
        r.request_id: r.body["ids"] for r in server.requests if r.path == DELETE_PATH and r.status == 200
    }
    batches, final = lines[:-1], lines[-1]
    assert {b["request_id"]: b["ids"] for b in batches} == acknowledged
    listed = [i for b in batches for i in b["ids"]]
    assert len(listed) == len(set(listed)) and set(listed) == set(ids) - set(server.records("test_coll"))
    assert final["outcome"] == "failed" and "InvalidParameter" in final["error"]
    assert final["counts"] == {
        "ids_deleted": len(listed),
        "batches": len(batches),
        "ids_requested": 300,
        "ids_unknown": 0,  # a 400 is the service's answer: that batch was not applied
        "ids_not_deleted": 300 - len(listed),
    }


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_a_delete_whose_answers_were_lost_says_acknowledged_unknown_and_not_sent(
    server, tmp_path, capfd, monkeypatch, fault
):
    ids = [f"x{n:04d}" for n in range(1000)]
    server.load("test_coll", [{"id": i} for i in ids])
    if fault == "cut":  # applied, then the answer cut off: every attempt after the first batch
        use_extra(server, monkeypatch, max_retries=1)
        server.cut_next(DELETE_PATH, where="body", applied=True, times=50, after=1)
    else:  # past the timeout: the server applies each one after the client gave up on it
        use_extra(server, monkeypatch, max_retries=0, timeout=1)
        server.stall_next(DELETE_PATH, seconds=2, times=50, after=1)
    receipt = tmp_path / "del.jsonl"
    result = run_dag("e2e_delete_receipt", conf={"ids": ids, "receipt": f"file://{receipt}"})
    assert result.tasks["delete"] == "failed"
    time.sleep(2.5 if fault == "stall" else 0)  # the stalled deletes land
    gone = set(ids) - set(server.records("test_coll"))
    lines = read_receipt(f"file://{receipt}")
    acknowledged = [i for line in lines if line["kind"] == "batch" for i in line["ids"]]
    unknown = [i for line in lines if line["kind"] == "unknown" for i in line["ids"]]
    final = lines[-1]
    # The first batch is acknowledged; the batches in flight when it stopped (up to 4) were all
    # applied by the server, and none of those after them was sent.
    assert acknowledged == ids[:100]
    assert 100 <= len(unknown) <= 400 and set(acknowledged) | set(unknown) == gone
    not_sent = len(ids) - len(gone)
    assert final["outcome"] == "failed"
    assert final["counts"] == {
        "ids_deleted": 100,
        "batches": 1,
        "ids_requested": 1000,
        "ids_unknown": len(unknown),
        "ids_not_deleted": not_sent,
    }
    code = "IncompleteAnswer" if fault == "cut" else "Timeout"
    assert all(line["error"].startswith(f"VikingDBConnectionError: VikingDB {code}")
               for line in lines if line["kind"] == "unknown")  # fmt: skip
    out = capfd.readouterr()
    text = out.out + out.err
    assert (
        f"100 of 1000 ids acknowledged in 1 of 10 batches; outcome unknown: {len(unknown)} ids "
        f"(first: '{unknown[0]}'" in text
    )
    assert f"not deleted (refused, or never sent): {not_sent} ids" in text
    assert "clearing the task (or an Airflow retry) sends all of them again" in text
    assert "Not done" not in text


GATEWAY_TIMEOUT_PAGE = "<html><head><title>504 Gateway Time-out</title></head><body>nginx</body></html>"


@pytest.mark.parametrize("fault", ["cut", "gateway-504"])
def test_a_load_whose_answer_was_lost_is_rolled_back_whole(server, capfd, monkeypatch, fault):
    before = server.records("test_coll")
    if fault == "cut":  # applied, then the answer cut off: every attempt after the first batch
        use_extra(server, monkeypatch, max_retries=1)
        server.cut_next(UPSERT_PATH, where="body", applied=True, times=50, after=1)
    else:  # one batch: applied, then a load balancer's 504 page in place of the service's answer
        use_extra(server, monkeypatch, max_retries=0)
        server.fail_next(UPSERT_PATH, status=504, body=GATEWAY_TIMEOUT_PAGE, applied=True, after=1)
    result = run_dag("e2e_upsert_rollback", conf={"records": records(500)})
    assert result.tasks["load"] == "failed" and result.tasks["rollback"] == "success", result
    written = result.xcom_keys["written_ids"]["load"]
    landed = [row["id"] for r in upserts(server) for row in r.body["data"]]  # applied, answered or not
    assert sorted(written) == sorted(set(landed)) and len(written) > 100
    if fault == "cut":
        unknown = len(written) - 100
    else:
        (gateway,) = [r for r in upserts(server) if r.status == 504]
        assert {row["id"] for row in gateway.body["data"]} <= set(written)  # the 504'd batch is there
        unknown = len(gateway.body["data"])
    assert server.records("test_coll") == before  # the rollback took back the unknown rows too
    assert result.xcom["rollback"]["ids_deleted"] == len(written)
    out = capfd.readouterr()
    assert f"and the {unknown} ids whose outcome is unknown" in out.out + out.err


def test_del_all_receipt(server, tmp_path):
    receipt = tmp_path / "purge.jsonl"
    result = run_dag("e2e_delete_all_receipt", conf={"receipt": f"file://{receipt}"})
    assert result.state == "success", result
    (line, final) = read_receipt(f"file://{receipt}")
    (request,) = [r for r in server.requests if r.path == DELETE_PATH]
    assert line["del_all"] is True and line["request_id"] == request.request_id
    assert line["records_before"] == 2
    assert final["outcome"] == "success" and final["counts"]["del_all"] is True


def test_a_receipt_store_that_fills_up_mid_delete_stops_it_and_says_what_was_done(server, flaky_store, capfd):
    # The receipt takes two lines, then the store is full. Every batch after the first is sent by
    # one of four workers: the one whose line cannot be written stops them all, the task fails
    # with the store's error, and the log splits the ids three ways (that batch was applied
    # without its line: outcome unknown). It is never a success.
    ids = [f"x{n:03d}" for n in range(600)]
    server.load("test_coll", [{"id": i} for i in ids])
    flaky_store.full_after = 2
    result = run_dag("e2e_delete_receipt", conf={"ids": ids, "receipt": "flaky://flaky-bucket/full.jsonl"})
    assert result.tasks["delete"] == "failed", result
    out = capfd.readouterr()
    text = out.out + out.err
    found = re.search(
        r"delete on collection 'test_coll' stopped by OSError: (\d+) of 600 ids acknowledged in (\d+) of 6 "
        r"batches; outcome unknown: (\d+) ids",
        text,
    )
    assert found, text[-3000:]
    acknowledged, batches, unknown = map(int, found.groups())
    assert (acknowledged, batches) == (200, 2) and unknown >= 100  # the batch whose line failed
    assert "No space left on device" in text
    # whatever was deleted is named by the log: acknowledged, or outcome unknown
    assert len(ids) - len(server.records("test_coll")) <= acknowledged + unknown


def test_a_receipt_that_cannot_be_written_fails_before_anything_is_deleted(server, tmp_path, capfd):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = run_dag("e2e_delete_receipt", conf={"ids": ["before-1"], "receipt": f"{blocker}/r.jsonl"})
    assert result.tasks["delete"] == "failed"
    assert [r for r in server.requests if r.path == DELETE_PATH] == []
    assert "before-1" in server.records("test_coll")
    out = capfd.readouterr()
    assert "Nothing was deleted" in out.out + out.err
