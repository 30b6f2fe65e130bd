"""SIGTERM in the middle of a task, in real DAG runs (dag.test) against the local server.

Airflow 3 sends a running task SIGTERM when it is cleared or marked failed, or when its
worker stops, and SIGKILL 5 s later. Its handler only calls the operator's ``on_kill``;
ours stops the work there: nothing more is sent, the log says what was and was not done,
the receipt ends "interrupted", and the task fails. The server's quota keeps each task
busy for seconds, and the signal comes once a few batches are acknowledged.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time

import pytest

from airflow_provider_vikingdb.batching import INTERRUPT_GRACE
from airflow_provider_vikingdb.hooks.vikingdb import DELETE_PATH, FETCH_IN_INDEX_PATH, UPSERT_PATH
from airflow_provider_vikingdb.local.faults import full_path
from airflow_provider_vikingdb.receipts import read_receipt
from tests.e2e.conftest import run_dag

pytestmark = pytest.mark.e2e

SECRET = "SK-e2e-sigterm-do-not-leak-4b1d"
IDS = [f"id{n:04d}" for n in range(3000)]
#: rows/s: 3000 ids take ten seconds, and the signal comes after about one
QUOTA = 300


@pytest.fixture
def server(vikingdb_server_factory, monkeypatch):
    srv = vikingdb_server_factory(collections=("test_coll",), sk=SECRET, quota=QUOTA)
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", srv.connection_json())
    return srv


class SigtermAfter:
    """Sends this process SIGTERM once the server has acknowledged ``answers`` requests on ``path``,
    as Airflow's supervisor does to a task that was cleared: only while Airflow's handler is
    installed (never the default action, which would end the test session)."""

    def __init__(self, server, path: str, answers: int = 3, *, in_flight: bool = False) -> None:
        """``in_flight``: then also wait for the next request on ``path`` to reach the server,
        which holds it 2 s: the signal comes while that request is in flight for sure."""
        self.server, self.path, self.answers, self.in_flight = server, path, answers, in_flight
        self.sent_at: float | None = None
        self.problem: str | None = None
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        deadline = time.time() + 60
        while time.time() < deadline:
            acknowledged = [r for r in self.server.requests if r.path == self.path and r.status == 200]
            if len(acknowledged) >= self.answers:
                if self.in_flight and not self._next_arrived(deadline):
                    self.problem = "no request followed"
                    return
                handler = signal.getsignal(signal.SIGTERM)
                if handler in (signal.SIG_DFL, signal.SIG_IGN, None):
                    self.problem = f"Airflow's SIGTERM handler is not installed ({handler!r}): not sent"
                    return
                self.sent_at = time.time()
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.01)
        self.problem = "the task never got that far"

    def _next_arrived(self, deadline: float) -> bool:
        self.server.stall_next(self.path, seconds=2)
        (stall,) = self.server.faults.queues[full_path(self.path)]
        while stall.remaining and time.time() < deadline:
            time.sleep(0.002)
        return not stall.remaining

    def check(self) -> float:
        self._thread.join(5)
        assert self.problem is None, self.problem
        assert self.sent_at is not None
        return self.sent_at


def arrivals_after(server, path: str, moment: float) -> list:
    return [r for r in server.requests if r.path == path and r.time > moment]


def test_sigterm_stops_a_delete_by_ids_and_says_what_was_done(server, tmp_path, capfd):
    server.load("test_coll", [{"id": i} for i in IDS])
    receipt = tmp_path / "receipt.jsonl"
    kill = SigtermAfter(server, DELETE_PATH)
    result = run_dag("e2e_delete_receipt", conf={"ids": IDS, "receipt": str(receipt)})
    sent_at = kill.check()

    assert result.tasks["delete"] == "failed", result
    out = capfd.readouterr().out
    assert "VikingDBDeleteOperator 'delete' received SIGTERM" in out
    found = re.search(r"interrupted: (\d+) of 3000 ids acknowledged in (\d+) of 30 batches", out)
    assert found, out[-3000:]
    acknowledged = int(found.group(1))
    deleted = len(IDS) - len(server.records("test_coll"))
    # It stopped: most ids are still there, and only requests already on their way when the
    # signal came may have been applied without an acknowledgement.
    assert 100 <= acknowledged <= deleted <= acknowledged + 400 < len(IDS)
    assert arrivals_after(server, DELETE_PATH, sent_at + INTERRUPT_GRACE + 0.5) == []
    lines = [json.loads(line) for line in receipt.read_text().splitlines()]
    assert lines[-1]["outcome"] == "interrupted"
    assert sum(len(line["ids"]) for line in lines if line.get("kind") == "batch") == acknowledged
    assert SECRET not in out


def test_sigterm_stops_a_load_and_its_rollback_deletes_what_was_written(server, tmp_path, capfd):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"id": i, "title": "new"}) + "\n" for i in IDS))
    kill = SigtermAfter(server, UPSERT_PATH)
    result = run_dag("e2e_upsert_file", conf={"path": str(path)})
    sent_at = kill.check()

    assert result.tasks == {"load": "failed", "rollback": "success"}, result
    out = capfd.readouterr().out
    assert "VikingDBUpsertOperator 'load' received SIGTERM" in out
    assert re.search(r"upsert on collection 'test_coll' interrupted: \d+ of \d+ ids acknowledged", out), out[
        -3000:
    ]
    assert arrivals_after(server, UPSERT_PATH, sent_at + INTERRUPT_GRACE + 0.5) == []
    written = result.xcom_keys["written_ids"]["load"]
    assert 100 <= len(written) < len(IDS)
    # the rollback took back what the load was acknowledged for, and the batches in flight when
    # it stopped (outcome unknown: written_ids holds them too, the service may have applied them)
    assert not set(written) & set(server.records("test_coll"))
    assert len(server.records("test_coll")) <= 400


@pytest.fixture
def events(vikingdb_server_factory, monkeypatch):
    srv = vikingdb_server_factory(
        collections=("events",), fields={"events": {"source": "string"}}, sk=SECRET, quota=QUOTA, index_lag=30
    )
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", srv.connection_json())
    return srv


@pytest.mark.parametrize(
    ("rows", "path", "phase"),
    [
        (
            3000,
            DELETE_PATH,
            r"deleting page 1 \(3000 ids\): (\d+) ids of the 3000 that matched at the start "
            r"deleted in the pages before it",
        ),
        (
            300,
            FETCH_IN_INDEX_PATH,
            r"waiting for index 'events_index' to apply pass 1's deletes \(all of them "
            r"acknowledged\): (\d+) ids of the 300 that matched at the start deleted",
        ),
    ],
    ids=["deleting", "verifying"],
)
def test_sigterm_stops_a_delete_by_filter_and_says_where_it_stood(events, rows, path, phase, capfd):
    events.load("events", [{"id": f"e{n:04d}", "source": "crm"} for n in range(rows)])
    kill = SigtermAfter(events, path, answers=3 if path == DELETE_PATH else 1)
    result = run_dag("e2e_filter_only", conf={"source": "crm"})
    sent_at = kill.check()

    assert result.tasks["delete"] == "failed", result
    out = capfd.readouterr().out
    found = re.search(
        r"Delete by filter of collection 'events' interrupted \(AirflowTaskTerminated\) while " + phase, out
    )
    assert found, out[-3000:]
    assert int(found.group(1)) == (0 if path == DELETE_PATH else rows)
    assert "a re-run of this run (the same cutoff) deletes what is left" in out
    assert arrivals_after(events, DELETE_PATH, sent_at + INTERRUPT_GRACE + 0.5) == []
    assert arrivals_after(events, FETCH_IN_INDEX_PATH, sent_at + 0.5) == []


@pytest.fixture
def retention(vikingdb_server_factory, monkeypatch):
    srv = vikingdb_server_factory(
        collections=("events",), fields={"events": {"created_at": "int64"}}, sk=SECRET, quota=QUOTA
    )
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", srv.connection_json())
    return srv


def test_sigterm_during_a_delete_by_filter_leaves_a_receipt_that_names_every_id_it_may_have_deleted(
    retention, tmp_path
):
    # docs/operators.md, Deletion receipts: the batch in flight when the task was stopped is an
    # "unknown" line, and the final counts split what matched three ways. One request at a time,
    # pages of 300: the signal comes mid-page 2, once its first batch is acknowledged and the next
    # request has reached the server (which holds it 2 s: it is in flight for sure).
    old = [{"id": f"o{n:04d}", "created_at": 1_000_000 + n} for n in range(1000)]
    young = [{"id": f"y{n:04d}", "created_at": 4_000_000_000} for n in range(100)]  # the year 2096
    retention.load("events", old + young)
    receipt = f"file://{tmp_path}/retention.jsonl"
    kill = SigtermAfter(retention, DELETE_PATH, answers=4, in_flight=True)
    result = run_dag("e2e_filter_retention_receipt", conf={"receipt": receipt})
    sent_at = kill.check()
    assert result.tasks["delete"] == "failed", result
    time.sleep(INTERRUPT_GRACE + 0.5)  # a request abandoned on its way lands by now, if it does
    assert arrivals_after(retention, DELETE_PATH, sent_at + INTERRUPT_GRACE + 0.5) == []

    lines = read_receipt(receipt)
    final = lines[-1]
    assert final["outcome"] == "interrupted" and "AirflowTaskTerminated" in final["error"]
    acknowledged = [i for line in lines if line["kind"] == "batch" for i in line["ids"]]
    unknown = [line for line in lines if line["kind"] == "unknown"]
    assert unknown and all(line["error"] == "in flight when interrupted" for line in unknown)
    maybe = [i for line in unknown for i in line["ids"]]
    counts = final["counts"]
    assert counts["ids_requested"] == 1000  # what matched
    assert (counts["ids_deleted"], counts["ids_unknown"]) == (len(acknowledged), len(maybe))
    assert counts["ids_deleted"] + counts["ids_unknown"] + counts["ids_not_deleted"] == 1000
    assert 300 <= len(acknowledged) < 1000
    # every record the delete took is in the receipt, as acknowledged or as outcome unknown
    gone = {r["id"] for r in old} - set(retention.records("events"))
    assert set(acknowledged) <= gone <= set(acknowledged) | set(maybe)
    assert set(retention.records("events")) >= {r["id"] for r in young}
