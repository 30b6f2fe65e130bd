"""Delete by filter in real DAG runs (dag.test) against a local server whose index lags (issue 12)."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections import Counter

import pytest

from airflow_provider_vikingdb.hooks.vikingdb import DELETE_PATH
from airflow_provider_vikingdb.receipts import read_receipt
from tests.e2e.conftest import LOGICAL_DATE, run_dag, use_extra

pytestmark = pytest.mark.e2e

RECORDS = 12_000  # 9000 older than 90 days: two pages of 5000 at least


def logical_date() -> dt.datetime:
    return LOGICAL_DATE + dt.timedelta(microseconds=time.time_ns() // 1000 % 86_400_000_000)


def events(now: dt.datetime) -> list[dict]:
    start = int(now.timestamp())
    return [
        {
            "id": f"e{i:05d}",
            "created_at": start - (i % 360) * 86400 - i % 977,  # 0..360 days old, few ties
            "source": "crm" if i % 4 == 0 else "web",
        }
        for i in range(RECORDS)
    ]


@pytest.fixture
def server(vikingdb_server_factory, monkeypatch):
    srv = vikingdb_server_factory(
        collections=("events",), fields={"events": {"created_at": "int64", "source": "string"}}, index_lag=1.0
    )
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", srv.connection_json())
    return srv


def deleted(server) -> list:
    return [i for r in server.requests if r.path == DELETE_PATH and r.status == 200 for i in r.body["ids"]]


def test_retention_deletes_exactly_what_is_older_than_the_cutoff_and_a_rerun_deletes_nothing(server):
    when = logical_date()
    rows = events(when)
    server.load("events", rows)
    result = run_dag("e2e_filter_retention", logical_date=when)
    assert result.state == "success", result
    summary = result.xcom["delete"]
    cutoff = int(when.timestamp()) - 90 * 86400  # data_interval_end (= the logical date for @daily)
    assert summary["cutoff"] == cutoff
    old = {r["id"] for r in rows if r["created_at"] < cutoff}
    assert 5000 < len(old) < RECORDS
    # counted before and after: the old ones gone, every other record untouched
    assert set(server.records("events")) == {r["id"] for r in rows} - old
    assert server.records("events")["e00001"] == {"created_at": rows[1]["created_at"], "source": "web"}
    assert Counter(deleted(server)).most_common(1)[0][1] == 1 and set(deleted(server)) == old
    assert (summary["matched"], summary["ids_deleted"], summary["remaining"]) == (len(old), len(old), 0)
    assert summary["pages"] >= 2 and summary["filter"]["field"] == "created_at"
    assert summary["sort_field"] == "created_at"

    server.clear_requests()
    again = run_dag("e2e_filter_retention", logical_date=when)  # the same run again: same cutoff
    assert again.state == "success", again
    assert again.xcom["delete"]["cutoff"] == cutoff
    assert (again.xcom["delete"]["matched"], again.xcom["delete"]["ids_deleted"]) == (0, 0)
    assert deleted(server) == []
    assert len(server.records("events")) == RECORDS - len(old)


def test_a_retention_run_whose_delete_answer_was_lost_records_those_ids_as_unknown(
    server, tmp_path, monkeypatch, capfd
):
    # docs/operators.md, Deletion receipts: a batch whose answer was lost (the service may have
    # deleted its ids) is an "unknown" line, and the final counts split what matched three ways.
    when = logical_date()
    now = int(when.timestamp())
    old = [{"id": f"o{i:04d}", "created_at": now - 100 * 86400 - i, "source": "crm"} for i in range(1000)]
    young = [{"id": f"y{i:04d}", "created_at": now - i, "source": "web"} for i in range(200)]
    server.load("events", old + young)
    # Pages of 300, one request at a time: page 1 (3 batches) and page 2's first batch are
    # acknowledged; page 2's second batch is applied and its answer cut off, on both attempts.
    use_extra(server, monkeypatch, max_retries=1)
    server.cut_next(DELETE_PATH, where="body", applied=True, times=2, after=4)
    receipt = f"file://{tmp_path}/retention.jsonl"
    result = run_dag("e2e_filter_retention_receipt", conf={"receipt": receipt}, logical_date=when)
    assert result.tasks["delete"] == "failed", result

    requests = [r for r in server.requests if r.path == DELETE_PATH]
    assert len(requests) == 6  # nothing was sent after the lost batch
    lost = requests[4].body["ids"]
    assert requests[5].body["ids"] == lost and len(lost) == 100
    gone = {r["id"] for r in old} - set(server.records("events"))
    assert set(server.records("events")) >= {r["id"] for r in young}

    lines = read_receipt(receipt)
    assert [line["kind"] for line in lines] == ["batch"] * 4 + ["unknown", "final"]
    acknowledged = [i for line in lines if line["kind"] == "batch" for i in line["ids"]]
    assert acknowledged == [i for r in requests[:4] for i in r.body["ids"]]
    unknown = lines[4]
    assert unknown["ids"] == lost and unknown["target"] == "collection 'events'"
    assert unknown["error"].startswith("VikingDBConnectionError: VikingDB IncompleteAnswer")
    assert set(acknowledged) | set(lost) == gone  # the receipt names every id that may be gone
    final = lines[-1]
    assert final["outcome"] == "failed" and "IncompleteAnswer" in final["error"]
    assert final["counts"] == {
        "ids_deleted": 400,
        "batches": 4,
        "ids_requested": 1000,  # what matched
        "ids_unknown": 100,
        "ids_not_deleted": 500,  # never sent: the rest of page 2, and the pages not searched yet
    }
    # the task's error says the same split of the whole run as the receipt
    out = capfd.readouterr()
    said = re.search(
        r"In all: 400 ids deleted from collection 'events' in 2 pages \(1 pass\); outcome unknown: 100 ids "
        r"\(sent, no answer came back: the service may have deleted them\); not deleted \(refused, or never "
        r"sent\): (\d+) ids; not reached yet: (\d+) of the 1000 ids that matched at the start",
        out.out + out.err,
    )
    assert said, out.out[-3000:]
    refused, not_reached = map(int, said.groups())
    page_2 = len(requests[3].body["ids"]) + len(lost) + refused  # its 3rd batch was never sent
    assert 0 < refused <= 100 and page_2 <= 300
    assert refused + not_reached == final["counts"]["ids_not_deleted"]  # the receipt's number


def test_a_retention_run_whose_receipt_store_fills_up_stops_and_says_where_it_stood(
    server, flaky_store, capfd
):
    # The receipt takes 4 lines (page 1's three batches and page 2's first), then the store is
    # full: the delete stops in page 2, and the two lines of the log say what that page did and
    # where the whole run stood. It is "stopped" by the store's error, not "interrupted".
    when = logical_date()
    now = int(when.timestamp())
    old = [{"id": f"o{i:04d}", "created_at": now - 100 * 86400 - i, "source": "crm"} for i in range(1000)]
    server.load("events", old)
    flaky_store.full_after = 4
    receipt = "flaky://flaky-bucket/retention-full.jsonl"
    result = run_dag("e2e_filter_retention_receipt", conf={"receipt": receipt}, logical_date=when)
    assert result.tasks["delete"] == "failed", result
    out = capfd.readouterr()
    text = out.out + out.err
    assert re.search(
        r"delete on collection 'events' stopped by OSError: 100 of \d+ ids acknowledged in 1 of 3 batches; "
        r"outcome unknown: 100 ids",
        text,
    ), text[-3000:]
    assert re.search(
        r"Delete by filter of collection 'events' stopped \(OSError\) while deleting page 2 \(\d+ ids\): "
        r"300 ids of the 1000 that matched at the start deleted in the pages before it",
        text,
    ), text[-3000:]
    assert "No space left on device" in text
    # page 2's second batch was applied without its line; nothing after it was sent
    assert len(deleted(server)) == 500 and len(server.records("events")) == 500


def test_filter_only_deletes_what_it_matches_across_pages(server):
    rows = events(logical_date()) + [{"id": f"x{i}", "created_at": 1, "source": "crm"} for i in range(3000)]
    server.load("events", rows)
    result = run_dag("e2e_filter_only", conf={"source": "crm"})
    assert result.state == "success", result
    crm = {r["id"] for r in rows if r["source"] == "crm"}
    assert len(crm) == 6000
    assert set(server.records("events")) == {r["id"] for r in rows} - crm
    summary = result.xcom["delete"]
    assert (summary["matched"], summary["ids_deleted"], summary["remaining"]) == (6000, 6000, 0)
    assert summary["filter"] == {"op": "must", "field": "source", "conds": ["crm"]}
    assert sorted(deleted(server)) == sorted(crm)


def test_dry_run_counts_and_deletes_nothing(server, capfd):
    when = logical_date()
    rows = events(when)
    server.load("events", rows)
    result = run_dag("e2e_filter_retention", conf={"dry_run": True}, logical_date=when)
    assert result.state == "success", result
    summary = result.xcom["delete"]
    old = [r for r in rows if r["created_at"] < summary["cutoff"]]
    assert (summary["dry_run"], summary["matched"], summary["ids_deleted"]) == (True, len(old), 0)
    assert len(summary["sample_ids"]) == 10 and set(summary["sample_ids"]) <= {r["id"] for r in old}
    assert [r for r in server.requests if r.path == DELETE_PATH] == []
    assert len(server.records("events")) == RECORDS
    out = capfd.readouterr().out
    assert f"Dry run: would delete {len(old)} records" in out
    # a dry run counts once, with no later pass: it says what it may not see
    assert "records written in the last ~3s (index_settle) may not be in it yet" in out


def test_milliseconds_on_a_field_of_milliseconds_deletes_what_is_older(server):
    when = logical_date()
    rows = [{**r, "created_at": r["created_at"] * 1000 + 123} for r in events(when)]
    server.load("events", rows)
    result = run_dag("e2e_filter_retention_ms", logical_date=when)
    assert result.state == "success", result
    cutoff = result.xcom["delete"]["cutoff"]
    old = {r["id"] for r in rows if r["created_at"] < cutoff}
    assert 5000 < len(old) < RECORDS and abs(cutoff - (when.timestamp() - 90 * 86400) * 1000) < 1000
    assert set(server.records("events")) == {r["id"] for r in rows} - old


@pytest.mark.parametrize("dry_run", [False, True])
def test_milliseconds_on_a_field_of_seconds_is_refused_before_anything_is_deleted(server, capfd, dry_run):
    # The cutoff in ms (~1.76e12) is above every value in seconds (~1.76e9): all would match.
    server.load("events", events(logical_date()))
    result = run_dag("e2e_filter_retention_ms", conf={"dry_run": dry_run})
    assert result.tasks["delete"] == "failed"
    assert [r for r in server.requests if r.path == DELETE_PATH] == []
    assert len(server.records("events")) == RECORDS
    out = capfd.readouterr().out
    assert "time_field 'created_at' holds epoch seconds, it seems" in out and "Set time_unit='s'" in out


def test_max_delete_refuses_before_the_first_delete(server, capfd):
    server.load("events", events(logical_date()))
    result = run_dag("e2e_filter_capped")
    assert result.tasks["delete"] == "failed"
    assert [r for r in server.requests if r.path == DELETE_PATH] == []
    assert len(server.records("events")) == RECORDS
    assert "would delete 3000 records (filter), more than max_delete=100" in capfd.readouterr().out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{}", "restricts nothing"),
        ('{"op": "must", "field": "source"', "neither JSON nor a Python literal"),
        ('{"op": "range", "field": "created_at", "gte": "soon"}', "filter.gte = 'soon' is not a number"),
        ('{"op": "must", "field": "owner", "conds": ["x"]}', "owner"),  # undeclared: the service says so
    ],
)
def test_bad_filters_fail_clearly_and_delete_nothing(server, capfd, text, message):
    server.load("events", events(logical_date())[:100])
    result = run_dag("e2e_filter_from_conf", conf={"filter": text})
    assert result.tasks["delete"] == "failed"
    assert [r for r in server.requests if r.path == DELETE_PATH] == []
    assert len(server.records("events")) == 100
    out = capfd.readouterr().out
    assert message in out and ("Nothing was sent" in out or "Nothing was deleted" in out)
