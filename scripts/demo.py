"""`make demo`: real example pipelines against the local VikingDB server, no cloud account.

1. starts `vikingdb-local` with the 1,200 documents of example_dags/data/documents.csv, each
   given `updated_ts` (int64 epoch seconds), its `updated_at` day moved so that the catalog's
   ages are kept relative to today;
2. runs the retention example (delete by `time_field`/`older_than`) for today with
   `airflow dags test` and shows what it deleted;
3. runs the ETL rollback example twice: a load that validation rejects, and one that fails
   half-way (a row the service refuses); both are rolled back with ``load.written_ids``;
4. prints what is left in the collection (read back over signed HTTP) and stops the server.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CATALOG = ROOT / "example_dags" / "data" / "documents.csv"
COLLECTION = "documents"
#: the day the catalog's dates are relative to; the demo moves them to today
CATALOG_DAY = dt.date(2026, 1, 15)
TODAY = dt.datetime.now(dt.timezone.utc).date()
LOGICAL_DATE = TODAY.isoformat()
# Demo credentials: the server accepts these, the connection signs with them. Five characters
# or more, so that Airflow's secret masker takes the SK (it skips shorter secrets).
ACCESS_KEY, SECRET_KEY = "AKLOCALDEMO", "local-demo-secret-key"


def start_server(records_file: Path) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [
            str(BIN / "vikingdb-local"),
            "--port",
            "0",
            "--collection",
            COLLECTION,
            "--field",
            f"{COLLECTION}:updated_ts:int64",
            "--field",
            f"{COLLECTION}:load_run_id:string",
            "--field",  # the rollback example's bad_row gives a row a rank the service refuses
            f"{COLLECTION}:rank:int64",
            "--load",
            str(records_file),
            # the index lags the collection as the real one does (about 20 s there): the rollback's
            # wait_for_index has to see the loaded rows reach the index and leave it again
            "--index-lag",
            "2",
            "--ak",
            ACCESS_KEY,
            "--sk",
            SECRET_KEY,
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = server.stdout.readline().strip()
    if "listening on" not in line:
        server.kill()
        raise SystemExit(f"the local server did not start: {line!r}")
    return server, line.rsplit(" ", 1)[1]


def airflow_dags_test(dag_id: str, conf: dict | None = None) -> float:
    cmd = [str(BIN / "airflow"), "dags", "test", dag_id, LOGICAL_DATE]
    if conf:
        cmd += ["--conf", json.dumps(conf)]
    print(
        f"  $ airflow dags test {dag_id} {LOGICAL_DATE}" + (f" --conf '{json.dumps(conf)}'" if conf else "")
    )
    started = time.monotonic()
    log = ROOT / ".airflow" / f"demo-{dag_id}.log"
    with log.open("w") as out:
        subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    print(f"    (full log: {log.relative_to(ROOT)})")
    return time.monotonic() - started


def last_run(dag_id: str, key: str = "return_value") -> tuple[str, dict[str, str], dict[str, object]]:
    """State, task states and XComs (``key``) of the newest run of ``dag_id`` in the metadata DB."""
    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalars(
            select(DagRun).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).limit(1)
        ).one()
        states = {
            ti.task_id: str(getattr(ti.state, "value", ti.state))
            for ti in run.get_task_instances(session=session)
        }
        rows = session.scalars(XComModel.get_many(run_id=run.run_id, dag_ids=dag_id, key=key))
        xcom = {row.task_id: XComModel.deserialize_value(row) for row in rows}
        return str(getattr(run.state, "value", run.state)), states, xcom


def count_present(hook, ids: list[str]) -> int:
    return len(hook.fetch_in_collection(ids, collection_name=COLLECTION)["fetch"]) if ids else 0


def with_timestamps(documents: list[dict]) -> list[dict]:
    """Each document with ``updated_ts``: its age in the catalog (days before CATALOG_DAY), from today."""
    midnight = dt.datetime.combine(TODAY, dt.time(), tzinfo=dt.timezone.utc)
    for doc in documents:
        age = CATALOG_DAY - dt.date.fromisoformat(doc["updated_at"])
        doc["updated_ts"] = int((midnight - age).timestamp())
    return documents


def main() -> int:
    started = time.monotonic()
    with CATALOG.open(newline="") as f:
        documents = with_timestamps(list(csv.DictReader(f)))
    records_file = ROOT / ".airflow" / "demo-documents.jsonl"
    records_file.parent.mkdir(exist_ok=True)
    records_file.write_text("".join(json.dumps(doc) + "\n" for doc in documents))
    catalog_ids = [doc["id"] for doc in documents]

    server, url = start_server(records_file)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    os.environ["AIRFLOW_CONN_VIKINGDB_DEFAULT"] = json.dumps(
        {
            "conn_type": "vikingdb",
            "host": f"http://{host}",  # the scheme in the URL: an extra "http" makes Airflow warn
            "port": int(port),
            "login": ACCESS_KEY,
            "password": SECRET_KEY,
            "extra": {"region": "cn-beijing"},
        }
    )
    from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook

    hook = VikingDBHook()
    try:
        print(
            f"Local VikingDB server at {url}: collection {COLLECTION!r} holds "
            f"{count_present(hook, catalog_ids)} documents.\n"
        )

        print("1. Data retention: delete documents not updated in the last 30 days (by filter, no id list)")
        airflow_dags_test("vikingdb_retention")
        state, tasks, xcom = last_run("vikingdb_retention")
        summary = xcom.get("delete_expired") or {}
        print(f"    run {state}; tasks {tasks}")
        print(
            f"    {summary.get('matched')} documents had updated_ts < {summary.get('cutoff')}: deleted "
            f"{summary.get('ids_deleted')} ids in {summary.get('pages')} search pages and "
            f"{summary.get('batches')} batches; {summary.get('remaining')} still match "
            f"(last request_id {summary.get('last_request_id')})"
        )
        expected = sum(1 for doc in documents if doc["updated_ts"] < (summary.get("cutoff") or 0))
        left = count_present(hook, catalog_ids)
        print(f"    {COLLECTION!r} now holds {left} documents\n")

        print("2. ETL rollback: load 250 rows (ttl 90 days), validation fails, the load is taken back")
        rolled_back = []
        for step, conf in (("a", {"bad_load": True, "rows": 250}), ("b", {"bad_row": 150, "rows": 250})):
            if step == "b":
                print("   ... and a load that fails half-way: row 150 has a rank the service refuses")
            airflow_dags_test("vikingdb_etl_rollback", conf)
            state, tasks, xcom = last_run("vikingdb_etl_rollback")
            written = list(last_run("vikingdb_etl_rollback", "written_ids")[2].get("load") or [])
            rollback = xcom.get("rollback") or {}
            print(f"    run {state} (as intended: the bad load stays visible); tasks {tasks}")
            print(
                f"    load wrote {len(written)} rows (XCom written_ids), rollback deleted "
                f"{rollback.get('ids_deleted')} ids in {rollback.get('batches')} batches; "
                f"{count_present(hook, written)} of them remain\n"
                f"    the rollback waited {rollback.get('index_wait_seconds')} s until index "
                f"{rollback.get('index_name')!r} no longer held them (proof: {rollback.get('index_proof')})"
            )
            rolled_back.append(
                tasks.get("rollback") == "success"
                and rollback.get("ids_deleted") == len(written) > 0
                and rollback.get("index_synced") is True
                and count_present(hook, written) == 0
                and (tasks.get("load") == ("success" if step == "a" else "failed"))
                and (step == "a" or len(written) < 250)
            )
        after = count_present(hook, catalog_ids)
        print(f"    {COLLECTION!r} holds {after} documents: the retained ones, untouched by the rollbacks\n")

        ok = (
            summary.get("ids_deleted", 0) > 0
            and summary.get("ids_deleted") == expected
            and summary.get("remaining") == 0
            and left == len(catalog_ids) - summary["ids_deleted"]
            and all(rolled_back)
            and after == left
        )
    finally:
        hook.close()
        server.terminate()
        server.wait(timeout=10)
    print(f"Server stopped. Demo {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.0f} s.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
