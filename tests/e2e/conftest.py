"""Run real DAGs with ``dag.test()`` against the local server, and read back what happened."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

LOGICAL_DATE = dt.datetime(2026, 1, 15, tzinfo=dt.timezone.utc)


@pytest.fixture(scope="session", autouse=True)
def airflow_db() -> None:
    """``dag.test()`` needs a migrated metadata DB; ``make test`` migrates it, plain pytest too."""
    home = Path(os.environ["AIRFLOW_HOME"])
    marker = home / ".migrated"
    if not marker.exists():
        home.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
            check=True,
            capture_output=True,
        )
        marker.touch()


@dataclass
class DagResult:
    state: str
    tasks: dict[str, str]
    xcom: dict[str, Any]
    #: every other XCom: key -> {task_id: value} (e.g. ``written_ids``, ``delete_summary``)
    xcom_keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: task_id -> the try the task instance ended on (1: it never went up_for_retry)
    tries: dict[str, int] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"DagResult(state={self.state!r}, tasks={self.tasks!r}, tries={self.tries!r})"


def _dagbag_dag(dag_id: str):
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag

    for folder in (ROOT / "example_dags", ROOT / "tests" / "e2e" / "dags"):
        bag = DagBag(dag_folder=str(folder))
        assert not bag.import_errors, bag.import_errors
        if dag_id in bag.dags:
            return bag.dags[dag_id]
    raise LookupError(dag_id)


def run_dag(dag_id: str, conf: dict | None = None, logical_date: dt.datetime | None = None) -> DagResult:
    """Run a DAG of our bundles in-process and return the run's state, task states and XComs.

    Each run gets its own logical date on 2026-01-15 (the clock's microsecond of the day), so
    runs never collide, not even those of two test sessions sharing the metadata DB.
    """
    if logical_date is None:
        logical_date = LOGICAL_DATE + dt.timedelta(microseconds=time.time_ns() // 1000 % 86_400_000_000)
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    dag = _dagbag_dag(dag_id)
    run = dag.test(logical_date=logical_date, run_conf=conf)
    with create_session() as session:
        tis = run.get_task_instances(session=session)
        tasks = {ti.task_id: _text(ti.state) for ti in tis}
        tries = {ti.task_id: ti.try_number for ti in tis}
        rows = session.scalars(XComModel.get_many(run_id=run.run_id, dag_ids=dag_id, key=None))
        xcom: dict[str, Any] = {}
        others: dict[str, dict[str, Any]] = {}
        for row in rows:
            value = XComModel.deserialize_value(row)
            if row.key == "return_value":
                xcom[row.task_id] = value
            else:
                others.setdefault(row.key, {})[row.task_id] = value
    return DagResult(state=_text(run.state), tasks=tasks, xcom=xcom, xcom_keys=others, tries=tries)


def use_extra(server, monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    """Point ``vikingdb_default`` at ``server`` with these connection extras (``max_retries=1``, ...)."""
    conn = json.loads(server.connection_json())
    conn["extra"].update(extra)
    monkeypatch.setenv("AIRFLOW_CONN_VIKINGDB_DEFAULT", json.dumps(conn))


def _text(state) -> str:
    return str(getattr(state, "value", state))
