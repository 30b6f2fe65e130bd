"""The example DAGs, run for real (dag.test) against the local server: good and bad paths."""

from __future__ import annotations

import csv
import datetime as dt

import pytest

from airflow_provider_vikingdb.hooks.vikingdb import DELETE_PATH
from tests.conftest import ROOT
from tests.e2e.conftest import run_dag

pytestmark = pytest.mark.e2e

CATALOG = ROOT / "example_dags" / "data" / "documents.csv"


def catalog():
    """The catalog's documents, each with ``updated_ts``: its ``updated_at`` day as epoch seconds."""
    with CATALOG.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        day = dt.datetime.fromisoformat(row["updated_at"]).replace(tzinfo=dt.timezone.utc)
        row["updated_ts"] = int(day.timestamp())
    return rows


FIELDS = {"documents": {"updated_ts": "int64", "load_run_id": "string", "rank": "int64"}}


@pytest.fixture
def server(vikingdb_server_factory, monkeypatch):
    srv = vikingdb_server_factory(collections=("documents",), fields=FIELDS, sk="SK-examples-0123456789")
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", srv.connection_json())
    return srv


def test_retention_deletes_exactly_the_documents_past_retention(server):
    rows = catalog()
    server.load("documents", rows)
    result = run_dag("vikingdb_retention")  # logical date 2026-01-15 (a time of that day), 30 days
    assert result.state == "success", result
    summary = result.xcom["delete_expired"]
    # the cutoff is the run's data_interval_end (its logical date, for @daily) less 30 days
    day = dt.datetime(2025, 12, 16, tzinfo=dt.timezone.utc).timestamp()
    assert day <= summary["cutoff"] < day + 86400
    expired = {r["id"] for r in rows if r["updated_ts"] < summary["cutoff"]}
    kept = {r["id"] for r in rows} - expired
    assert 0 < len(expired) < len(rows)
    assert set(server.records("documents")) == kept
    assert summary["ids_deleted"] == summary["matched"] == len(expired)
    assert summary["remaining"] == 0
    assert summary["batches"] >= -(-len(expired) // 100)


def test_retention_with_a_longer_period_deletes_less(server):
    server.load("documents", catalog())
    result = run_dag("vikingdb_retention", conf={"retention_days": 60})
    assert result.state == "success", result
    cutoff = dt.date(2025, 11, 16)
    assert all(dt.date.fromisoformat(r["updated_at"]) >= cutoff for r in server.records("documents").values())


def test_retention_against_a_missing_collection_fails_loudly(vikingdb_server_factory, monkeypatch, capfd):
    srv = vikingdb_server_factory(collections=("other",))
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", srv.connection_json())
    result = run_dag("vikingdb_retention")
    assert result.state == "failed"
    assert result.tasks["delete_expired"] == "failed"
    assert [r for r in srv.requests if r.path == DELETE_PATH] == []  # it fails at the count
    out = capfd.readouterr().out
    assert "NotFound.VikingdbCollection" in out and "Nothing was deleted" in out


def test_retention_refuses_to_delete_more_than_max_delete(server, capfd):
    rows = catalog()
    server.load("documents", rows)
    result = run_dag("vikingdb_retention", conf={"retention_days": 1})  # most of the catalog
    assert result.tasks["delete_expired"] == "failed"
    assert len(server.records("documents")) == len(rows)
    assert [r for r in server.requests if r.path == DELETE_PATH] == []
    assert "more than max_delete=1000" in capfd.readouterr().out


def test_rollback_takes_back_exactly_this_runs_load_when_validation_fails(server):
    server.load("documents", [{"id": "existing-1", "title": "kept"}, {"id": "existing-2", "title": "kept"}])
    result = run_dag("vikingdb_etl_rollback", conf={"bad_load": True, "rows": 230})
    assert result.state == "failed", result  # the bad load stays visible
    assert result.tasks["load"] == "success" and result.tasks["validate"] == "failed"
    assert result.tasks["rollback"] == "success"
    assert result.tasks["mark_run_failed"] == "failed"
    written = result.xcom_keys["written_ids"]["load"]
    assert len(written) == 230 == result.xcom["load"]["ids_written"]
    upserts = [r for r in server.requests if r.path.endswith("/data/upsert")]
    assert {row["id"] for r in upserts for row in r.body["data"]} == set(written)
    assert {r.body["ttl"] for r in upserts} == {90 * 86400}
    assert sorted(server.records("documents")) == ["existing-1", "existing-2"]
    assert result.xcom["rollback"]["ids_deleted"] == 230


def test_rollback_by_filter_takes_back_exactly_this_runs_load(server, monkeypatch):
    # The rollback follows the load at once, before the index shows the load's rows: its first
    # count finds nothing, and is made again once the index can be trusted (settle: 30 s by
    # default, 3 s here against a lag of 1.5 s).
    server.index_lag = 1.5
    monkeypatch.setattr("airflow_provider_vikingdb.filter_delete.DEFAULT_SETTLE", 3.0)
    server.load("documents", [{"id": "existing-1", "load_run_id": "an earlier run"}, {"id": "existing-2"}])
    result = run_dag("vikingdb_etl_rollback_by_filter", conf={"bad_load": True, "rows": 230})
    assert result.state == "failed", result
    assert (result.tasks["validate"], result.tasks["rollback"]) == ("failed", "success")
    assert sorted(server.records("documents")) == ["existing-1", "existing-2"]
    summary = result.xcom["rollback"]
    assert (summary["matched"], summary["ids_deleted"], summary["remaining"]) == (230, 230, 0)
    assert summary["filter"]["conds"][0].startswith("manual__")  # {{ run_id }}, rendered


def test_a_load_that_fails_half_way_is_rolled_back(vikingdb_server_factory, monkeypatch):
    srv = vikingdb_server_factory(collections=("documents",), fields={"documents": {"rank": "int64"}})
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", srv.connection_json())
    srv.load("documents", [{"id": "existing-1", "rank": 1}])
    result = run_dag("vikingdb_etl_rollback", conf={"rows": 250, "bad_row": 150})
    assert result.state == "failed", result
    assert result.tasks["load"] == "failed" and result.tasks["validate"] == "upstream_failed"
    assert result.tasks["rollback"] == "success"
    upserts = [r for r in srv.requests if r.path.endswith("/data/upsert")]
    refused = [r for r in upserts if r.status == 400]
    assert len(refused) == 1 and any(row["rank"] == "not a number" for row in refused[0].body["data"])
    acknowledged = {row["id"] for r in upserts if r.status == 200 for row in r.body["data"]}
    assert set(result.xcom_keys["written_ids"]["load"]) == acknowledged and len(acknowledged) >= 100
    assert result.xcom["rollback"]["ids_deleted"] == len(acknowledged)
    assert sorted(srv.records("documents")) == ["existing-1"]


def test_rollback_is_skipped_when_the_load_is_good(server):
    result = run_dag("vikingdb_etl_rollback", conf={"bad_load": False, "rows": 120})
    assert result.state == "success", result
    assert result.tasks["rollback"] == "skipped"
    assert result.tasks["mark_run_failed"] == "skipped"
    assert len(server.records("documents")) == 120
    assert [r for r in server.requests if r.path == DELETE_PATH] == []


def test_purge_refuses_without_the_repeated_collection_name(server):
    server.load("documents", [{"id": f"d{i}"} for i in range(10)])
    result = run_dag("vikingdb_purge", conf={"collection": "documents", "confirm": "documnets"})
    assert result.state == "failed"
    assert result.tasks["check_confirmation"] == "failed"
    assert result.tasks["delete_all"] == "upstream_failed"
    assert len(server.records("documents")) == 10
    assert server.requests == []


def test_purge_with_confirmation_deletes_everything_in_one_request(server):
    server.load("documents", [{"id": f"d{i}"} for i in range(10)])
    result = run_dag("vikingdb_purge", conf={"collection": "documents", "confirm": "documents"})
    assert result.state == "success", result
    assert server.records("documents") == {}
    assert [r.body for r in server.requests if r.path == DELETE_PATH] == [
        {"collection_name": "documents", "del_all": True}
    ]
    assert result.xcom["delete_all"]["del_all"] is True
