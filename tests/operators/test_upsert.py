"""VikingDBUpsertOperator.execute against the local server: checks, batches, ttl, written_ids."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading

import pytest

from airflow_provider_vikingdb._compat import AirflowException, AirflowFailException
from airflow_provider_vikingdb.hooks.vikingdb import UPSERT_PATH, VikingDBHook
from airflow_provider_vikingdb.operators.upsert import UNFINISHED
from airflow_provider_vikingdb.operators.vikingdb import VikingDBUpsertOperator
from tests.conftest import Interrupted


class FakeTI:
    def __init__(self, try_number=1):
        self.try_number = try_number
        self.pushed = {}
        self.history = []  # every push, in order

    def xcom_push(self, key, value):
        self.pushed[key] = value
        self.history.append((key, value))


class Clock:
    def __init__(self):
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            return self.now


@pytest.fixture
def server(vikingdb_server_factory, monkeypatch):
    clock = Clock()
    srv = vikingdb_server_factory(collections=("docs", "nums:id:int64"), clock=clock)
    srv.test_clock = clock
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", srv.connection_json())
    return srv


def run(op, try_number=1):
    ti = FakeTI(try_number)
    try:
        return op.execute({"ti": ti}), ti.pushed
    except BaseException as exc:
        exc.pushed = ti.pushed
        exc.history = ti.history
        raise


def upserts(server):
    return [r for r in server.requests if r.path == UPSERT_PATH]


def rows(count, prefix="d"):
    return [{"id": f"{prefix}{n}", "n": n} for n in range(count)]


def test_writes_in_batches_with_ttl_and_pushes_the_written_ids(server):
    op = VikingDBUpsertOperator(task_id="load", collection_name="docs", records=rows(250), ttl=3600)
    summary, pushed = run(op)
    assert sorted(len(r.body["data"]) for r in upserts(server)) == [50, 100, 100]
    assert {r.body["ttl"] for r in upserts(server)} == {3600}
    assert len(server.records("docs")) == 250
    assert sorted(pushed["written_ids"]) == sorted(r["id"] for r in rows(250))
    assert summary == {
        "target": "collection 'docs'",
        "records": 250,
        "ttl": 3600,
        "ids_written": 250,
        "batches": 3,
        "throttled": 0,
        "retries": 0,
        "last_request_id": summary["last_request_id"],
    }
    assert summary["last_request_id"] in {r.request_id for r in upserts(server)}


def test_ttl_as_a_timedelta_and_without_ttl_no_ttl_field_is_sent(server):
    run(
        VikingDBUpsertOperator(
            task_id="a", collection_name="docs", records=rows(1), ttl=dt.timedelta(hours=1)
        )
    )
    run(VikingDBUpsertOperator(task_id="b", collection_name="docs", records=rows(1, "e")))
    first, second = upserts(server)
    assert first.body["ttl"] == 3600 and "ttl" not in second.body


def test_a_record_with_ttl_2_is_gone_from_the_collection_after_2_seconds(server):
    summary, _ = run(VikingDBUpsertOperator(task_id="t", collection_name="docs", records=rows(3), ttl=2))
    hook = VikingDBHook()
    assert len(hook.fetch_in_collection(["d0", "d1", "d2"], collection_name="docs")["fetch"]) == 3
    server.test_clock.now += 1.9
    assert len(hook.fetch_in_collection(["d0", "d1", "d2"], collection_name="docs")["fetch"]) == 3
    server.test_clock.now += 0.1
    fetched = hook.fetch_in_collection(["d0", "d1", "d2"], collection_name="docs")
    assert fetched["fetch"] == [] and sorted(fetched["ids_not_exist"]) == ["d0", "d1", "d2"]
    assert summary["ttl"] == 2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"n": 1}, "records[2] has no 'id' field"),
        ({"id": False}, "records[2]['id'] is a bool"),
        ({"id": "d9", "v": [0.1, float("nan")]}, "records[2]['v'][1] is NaN"),
        ({"id": 5}, "records[2]['id'] = 5 is an int64, but records[0] has a string key"),
        (["id", "x"], "records[2] = ['id', 'x'] is a list, not a dict"),
        ({"id": "d0"}, "records[2]['id'] = 'd0' is the key of records[0] too"),
    ],
)
def test_bad_records_fail_naming_the_first_one_and_send_nothing(server, bad, message):
    records = [*rows(2), bad, *rows(200, "z")]
    op = VikingDBUpsertOperator(task_id="load", collection_name="docs", records=records)
    with pytest.raises(AirflowFailException) as info:
        run(op)
    assert message in str(info.value) and "Nothing was sent" in str(info.value)
    assert server.requests == []
    assert info.value.pushed == {"written_ids": []}


def test_a_503_beyond_the_hooks_retries_fails_the_try_for_airflow_to_retry(server, monkeypatch):
    conn = json.loads(server.connection_json())
    conn["extra"]["max_retries"] = 1
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))
    server.fail_next(UPSERT_PATH, after=1, status=503, code="ServiceUnavailable", times=2)
    op = VikingDBUpsertOperator(task_id="load", collection_name="docs", records=rows(250), max_concurrency=1)
    with pytest.raises(AirflowException) as info:
        run(op)
    assert not isinstance(info.value, AirflowFailException)  # Airflow's retries apply
    text = str(info.value)
    assert "batch 2 of 3 failed with VikingDB HTTP 503 ServiceUnavailable" in text
    assert "holds the 100 ids the service acknowledged" in text
    assert info.value.pushed["written_ids"] == [f"d{n}" for n in range(100)]


def test_a_refused_second_batch_fails_naming_batch_code_and_request_id(server):
    server.fail_next(UPSERT_PATH, after=1, status=400, code="InvalidParameter", message="field v is bad")
    op = VikingDBUpsertOperator(task_id="load", collection_name="docs", records=rows(250), max_concurrency=1)
    with pytest.raises(AirflowFailException) as info:  # a 400 is refused again: no Airflow retry
        run(op)
    refused = [r for r in upserts(server) if r.status == 400]
    assert [len(r.body["data"]) for r in upserts(server)] == [100, 100]  # nothing after the refusal
    text = str(info.value)
    assert "batch 2 of 3 failed with VikingDB HTTP 400 InvalidParameter" in text
    assert f"request_id={refused[0].request_id}" in text
    assert "holds the 100 ids the service acknowledged" in text
    assert info.value.pushed["written_ids"] == [f"d{n}" for n in range(100)]
    assert sorted(server.records("docs")) == sorted(f"d{n}" for n in range(100))


def test_interrupted_load_still_pushes_what_was_acknowledged(server):
    op = VikingDBUpsertOperator(task_id="load", collection_name="docs", records=rows(300), max_concurrency=1)
    calls = []

    def on_progress_stop(batch, envelope):  # the task is stopped after the second batch
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt

    hook = op.hook
    original = hook.upsert

    def upsert(rows_, **kwargs):
        inner = kwargs.pop("on_batch")

        def both(batch, envelope):
            inner(batch, envelope)
            on_progress_stop(batch, envelope)

        return original(rows_, on_batch=both, **kwargs)

    hook.upsert = upsert
    with pytest.raises(KeyboardInterrupt) as info:
        run(op)
    assert info.value.pushed["written_ids"] == [f"d{n}" for n in range(200)]


def use_extra(server, monkeypatch, **extra):
    conn = json.loads(server.connection_json())
    conn["extra"].update(extra)
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))


def test_written_ids_keep_a_batch_whose_answer_was_lost_for_the_rollback(server, monkeypatch):
    use_extra(server, monkeypatch, max_retries=1)
    server.cut_next(UPSERT_PATH, where="body", applied=True, times=2, after=2)  # batch 3, both attempts
    op = VikingDBUpsertOperator(task_id="load", collection_name="docs", records=rows(500), max_concurrency=1)
    op.hook._sleep = lambda delay: None
    with pytest.raises(AirflowException) as info:
        run(op)
    # batch 3 was written although its answer never came back: a rollback must delete it too
    assert sorted(server.records("docs")) == sorted(f"d{n}" for n in range(300))
    assert info.value.pushed["written_ids"] == [f"d{n}" for n in range(300)]
    text = str(info.value)
    assert "200 of 500 ids acknowledged in 2 of 5 batches; outcome unknown: 100 ids (first: 'd200'" in text
    assert "not written (refused, or never sent): 200 ids (first: 'd300'" in text
    assert "Upserts are idempotent: clearing the task (or an Airflow retry) sends all of them again" in text
    assert (
        "XCom 'written_ids' holds the 200 ids the service acknowledged and the 100 ids whose outcome is "
        "unknown (sent, the answer lost: they may have been written): a rollback deletes them" in text
    )


def test_an_interrupted_load_pushes_the_batch_in_flight_too(server):
    import signal

    class Interrupted(BaseException):
        pass

    server.stall_next(UPSERT_PATH, seconds=30, after=1)  # batch 2 is sent and never answered
    op = VikingDBUpsertOperator(task_id="load", collection_name="docs", records=rows(300), max_concurrency=1)

    def interrupt(signum, frame):
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        with pytest.raises(Interrupted) as info:
            run(op)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    # batch 1 acknowledged, batch 2 in flight (the server may apply it yet), batch 3 never sent
    assert info.value.pushed["written_ids"] == [f"d{n}" for n in range(200)]


def test_a_streamed_load_interrupted_in_its_second_chunk_says_what_each_chunk_did(
    server, tmp_path, interrupt, caplog, capfd
):
    # records_path is streamed in chunks (batch_size 10 x 16 x 1 worker = 160 rows), one batch
    # pool per chunk sharing one summary. A signal (as Airflow's timeout) lands while the second
    # chunk's first batch is in flight. Its line must not count the first chunk's 16 batches as
    # this chunk's ("0 of 40 ids acknowledged in 16 of 4 batches"), and must say what the first
    # chunk wrote, as the written_ids line does.
    from airflow_provider_vikingdb.local.faults import full_path

    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"id": n}) + "\n" for n in range(1, 201)))
    server.stall_next(UPSERT_PATH, seconds=30, after=16)  # batch 17 is sent and never answered
    (stall,) = server.faults.queues[full_path(UPSERT_PATH)]
    op = VikingDBUpsertOperator(
        task_id="load", collection_name="nums", records_path=str(path), batch_size=10, max_concurrency=1
    )

    interrupt.when(lambda: not stall.remaining)  # batch 17 has reached the server
    with pytest.raises(Interrupted) as info:
        run(op)
    assert info.value.pushed["written_ids"] == list(range(1, 171))  # 160 acknowledged, 10 maybe
    out, err = capfd.readouterr()
    line = next(t for t in "\n".join([caplog.text, out, err]).splitlines() if "interrupted:" in t)
    assert "interrupted: 0 of 40 ids acknowledged in 0 of 4 batches;" in line
    assert "outcome unknown: 10 ids (first: 161," in line
    assert "not written (refused, or never sent): 30 ids (first: 171," in line
    assert "Before these 40 ids, 160 ids were acknowledged in 16 batches." in line


def test_records_path_is_checked_whole_then_streamed(server, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"id": n, "v": [n / 10]}) + "\n" for n in range(1, 251)))
    op = VikingDBUpsertOperator(task_id="load", collection_name="nums", records_path=f"file://{path}", ttl=60)
    summary, pushed = run(op)
    assert summary["records"] == 250 and summary["ids_written"] == 250 and summary["batches"] == 3
    assert sorted(pushed["written_ids"]) == list(range(1, 251))
    assert len(server.records("nums")) == 250


def test_a_bad_last_line_sends_nothing(server, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"id": n}) + "\n" for n in range(1, 251)) + '{"id": 0}\n')
    op = VikingDBUpsertOperator(task_id="load", collection_name="nums", records_path=str(path))
    with pytest.raises(AirflowFailException) as info:
        run(op)
    assert "line 251: record['id'] is 0" in str(info.value)
    assert server.requests == []


def test_a_missing_file_fails_naming_it(server, tmp_path):
    op = VikingDBUpsertOperator(
        task_id="load", collection_name="docs", records_path=str(tmp_path / "no.jsonl")
    )
    with pytest.raises(AirflowFailException) as info:
        run(op)
    assert "no.jsonl cannot be read: FileNotFoundError" in str(info.value)
    assert server.requests == []


def test_a_streamed_upsert_logs_its_progress_over_the_whole_stream(server, caplog, capfd):
    # One batch pool per chunk, one summary: each chunk's line counts what was read so far, never
    # this chunk's requested against the whole stream's done ("200/100 ids in 2/1 batches").
    hook = VikingDBHook(max_concurrency=1)
    result = hook.upsert(iter(rows(250)), collection_name="docs", chunk_rows=100)
    assert (result.ids_done, result.ids_requested, result.batches, result.batches_total) == (250, 250, 3, 3)
    out, err = capfd.readouterr()
    logged = "\n".join([caplog.text, out, err])
    lines = re.findall(r"upsert on collection 'docs': (\d+/\d+ ids in \d+/\d+ batches)", logged)
    assert lines == ["100/100 ids in 1/1 batches", "200/200 ids in 2/2 batches", "250/250 ids in 3/3 batches"]


def test_the_hook_streams_an_iterable_in_chunks_and_numbers_batches_across_them(server):
    server.fail_next(UPSERT_PATH, after=3, status=400, code="InvalidParameter")
    hook = VikingDBHook(max_concurrency=1)
    seen = []
    with pytest.raises(Exception) as info:
        hook.upsert(
            iter(rows(500)), collection_name="docs", chunk_rows=200, on_batch=lambda b, e: seen.append(len(b))
        )
    error = info.value
    assert seen == [100, 100, 100]
    assert error.failed_batches == [4] and "batch 4 of 5 failed" in str(error)
    assert list(error.failures) == [4] and error.failures[4] is error.cause  # numbered alike
    assert len(error.done_ids) == 300 and len(error.not_done_ids) == 200
    assert error.result.ids_done == 300 and error.result.ids_requested == 500


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give exactly one of records"),
        ({"records": [], "records_path": "/x.jsonl"}, "give exactly one of records"),
        ({"records": [], "ttl": 0}, "ttl = 0 is outside 1..2147483647"),
        ({"records": [], "ttl": True}, "ttl is a bool"),
        ({"records": [], "ttl": 2**31}, "outside 1..2147483647"),
        ({"records": [], "batch_size": 101}, "batch_size must be an integer from 1 to 100"),
        ({"records": [], "id_field": ""}, "id_field must be the name"),
        ({"records": [], "max_concurrency": 0}, "max_concurrency must be a positive integer"),
        ({"records": [], "max_concurrency": True}, "max_concurrency must be a positive integer"),
        ({"records": [], "rows_per_second": 0}, "rows_per_second must be > 0 or None, got 0"),
        ({"records": [], "rows_per_second": "fast"}, "rows_per_second must be > 0 or None, got 'fast'"),
    ],
)
def test_bad_arguments_fail_when_the_dag_is_parsed(kwargs, message):
    with pytest.raises(ValueError) as info:
        VikingDBUpsertOperator(task_id="load", collection_name="docs", **kwargs)
    assert message in str(info.value) and "'load'" in str(info.value)


def test_no_records_is_a_success_that_sends_nothing(server):
    summary, pushed = run(VikingDBUpsertOperator(task_id="load", collection_name="docs", records=[]))
    assert summary["ids_written"] == 0 and pushed == {"written_ids": []} and server.requests == []


def test_written_ids_is_an_xcomarg_of_the_written_ids_key():
    from airflow.sdk import DAG

    with DAG("d", schedule=None):
        load = VikingDBUpsertOperator(task_id="load", collection_name="docs", records=[])
    arg = load.written_ids
    assert arg.operator is load and arg.key == "written_ids"


def test_written_ids_says_unfinished_before_anything_is_sent(server):
    # A load killed outright (out of memory, SIGKILL) never reaches its final push: what it left
    # must not read as "wrote nothing".
    ti = FakeTI()
    ti.xcom_push = lambda key, value: ti.history.append((key, value, len(upserts(server))))
    VikingDBUpsertOperator(task_id="load", collection_name="docs", records=rows(150)).execute({"ti": ti})
    (first_key, first, sent_then), (last_key, last, _) = ti.history
    assert (first_key, first, sent_then) == ("written_ids", UNFINISHED, 0)
    assert last_key == "written_ids" and sorted(last) == sorted(r["id"] for r in rows(150))


@pytest.mark.parametrize("source", ["records", "records_path"])
def test_a_later_try_lists_every_id_of_the_input_before_it_sends_anything(
    server, tmp_path, source, caplog, capfd
):
    # Airflow clears a task's XComs when a new try starts: what try 1 wrote is no longer listed, and
    # it may be any of the records. Try 2's written_ids holds them all, from before its first request.
    records = rows(250)
    if source == "records":
        op = VikingDBUpsertOperator(task_id="load", collection_name="docs", records=records)
    else:
        path = tmp_path / "rows.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        op = VikingDBUpsertOperator(task_id="load", collection_name="docs", records_path=str(path))
    server.fail_next(UPSERT_PATH, status=400, code="InvalidParameter", message="scripted")  # the first batch
    with pytest.raises(AirflowFailException) as info:
        run(op, try_number=2)
    every = [r["id"] for r in records]
    pushes = [value for key, value in info.value.history if key == "written_ids"]
    assert pushes[1] == every  # before the first request: a kill from here on still leaves them
    assert info.value.pushed["written_ids"] == every  # nothing acknowledged, still all of them
    assert len(upserts(server)) == 1
    assert "all 250 ids of the input (try 2: an earlier try may have written any of them)" in str(info.value)
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    assert "This is try 2 of the load: an earlier try may have written any of the 250 records" in logged


def test_a_later_try_that_succeeds_lists_each_id_once(server):
    summary, pushed = run(
        VikingDBUpsertOperator(task_id="load", collection_name="docs", records=rows(250)), 3
    )
    assert pushed["written_ids"] == [r["id"] for r in rows(250)]
    assert summary["ids_written"] == 250 and len(server.records("docs")) == 250
