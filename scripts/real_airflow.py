"""The deferrable path under real Airflow processes: run by hand, takes a minute or two.

``dag.test()`` (the e2e tests, ``make demo``) runs a trigger inline, in the task's own process.
In production the worker defers, the triggerer rebuilds the trigger from its serialized kwargs
and runs it, and the worker resumes in ``execute_complete``. This script runs that path:

1. an AIRFLOW_HOME of its own in a temp dir (``airflow db migrate``, no examples) and a DAGs
   folder there with one DAG file it writes;
2. ``vikingdb-local`` with an index lag, some records loaded, and AIRFLOW_CONN_VIKINGDB_DEFAULT
   (signing with a random 32-character secret key) in every Airflow process's environment;
3. ``airflow api-server``, ``scheduler``, ``dag-processor`` and ``triggerer`` as separate
   processes (each logs to a file), then, over the REST API: wait until the DAG is parsed,
   unpause it, trigger it and wait for the run;
4. the DAG: ``load`` (VikingDBUpsertOperator) >> ``delete`` (VikingDBDeleteOperator on
   ``load.written_ids`` with ``wait_for_index``, ``deferrable=True``, timedelta ``index_*``)
   >> ``wait_index`` (VikingDBIndexSyncSensor on the same ids, ``deferrable=True``, a pendulum
   ``settle``, a timedelta ``poke_interval``); the index lag makes both wait in the triggerer;
5. checks the run's and the tasks' states, that the triggerer ran each trigger (from kwargs with
   the durations as float seconds) and the worker resumed, that the records are gone from the
   collection and the index (and the loaded ones are not), and that the secret key is in no file;
6. a second DAG loads 3000 rows (the server's quota makes that take ten seconds) and the script
   marks the running task failed over the REST API, as a user does in the UI: the supervisor
   sends it SIGTERM, and the load must say what it wrote, stop writing and fail;
7. a third DAG deletes 2400 ids in 4 mapped tasks that the LocalExecutor runs at once, each
   with ``rows_per_second`` at the quota / 4 (what docs/performance.md tells such users): they
   must overlap, none may be throttled, and every id must be gone;
8. stops everything (also on Ctrl-C or a failure) and exits 1 if any check failed.

    python3 scripts/real_airflow.py                    # the project's .venv (newest Airflow)
    python3 scripts/real_airflow.py --venv .venv-lower # the lower-bound environment
    python3 scripts/real_airflow.py --keep             # keep the temp dir (logs, DB) afterwards

Standard library only: the checks do not go through the provider they check (the records are
read back with the server's own API key, over plain HTTP).
"""

from __future__ import annotations

import argparse
import ast
import base64
import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "vikingdb_real_processes"
COLLECTION = "real_procs"
INDEX = f"{COLLECTION}_index"
#: seconds before a write or a delete reaches the index (the service: ~20 s)
INDEX_LAG = 6
#: the delete's index_settle and the sensor's settle: at least the lag, so "absent" proves "gone"
SETTLE = 8
LOADED_IDS = [f"keep-{i}" for i in range(1, 4)]  # in the collection from the start; must stay
UPSERTED_IDS = [f"rp-{i:03d}" for i in range(20)]  # written by the DAG, then deleted by it
ACCESS_KEY = "AKREALPROCS"
TASKS = ("load", "delete", "wait_index")
DEFERRED_TASKS = ("delete", "wait_index")
TRIGGER_CLASS = "airflow_provider_vikingdb.triggers.vikingdb.VikingDBIndexSyncTrigger"
RUN_TIMEOUT = 300.0
PARSE_TIMEOUT = 180.0
#: the second DAG: a load that the run marks failed while it runs (Airflow then sends SIGTERM)
SIGTERM_DAG_ID = "vikingdb_real_sigterm"
SIGTERM_IDS = [f"st-{i:04d}" for i in range(3000)]
#: the server's write quota (rows/s): the 3000-row load takes ten seconds
QUOTA = 300

#: the opening every DAG file written here shares (``.format`` fills ``dag_id``)
DAG_OPENING = """
with DAG(
    dag_id={dag_id!r},
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    default_args={{"retries": 0}},
):
"""


def dag_file(doc: str, imports: str, tasks: str) -> str:
    """The template of a DAG file written here, to ``.format`` with ``dag_id`` and the fields of
    ``tasks``: ``doc``, the imports every one needs and ``imports``, one DAG holding ``tasks``."""
    return f'"""{doc}"""\n\nimport pendulum\nfrom airflow.sdk import DAG\n\n{imports}' + DAG_OPENING + tasks


SIGTERM_DAG_FILE = dag_file(
    "Written by scripts/real_airflow.py: a load long enough to be marked failed while it runs.",
    "from airflow_provider_vikingdb.operators.vikingdb import VikingDBUpsertOperator\n",
    """\
    VikingDBUpsertOperator(
        task_id="load",
        collection_name={collection!r},
        records=[{{"id": key, "text": "sigterm"}} for key in {ids!r}],
        max_concurrency=4,
    )
""",
)

MAPPED_DAG_ID = "vikingdb_real_mapped"
#: mapped deletes at once, each of its own ids, each capped at the quota / their number
MAPPED_TASKS = 4
MAPPED_IDS = [[f"mp{k}-{i:03d}" for i in range(600)] for k in range(MAPPED_TASKS)]

MAPPED_DAG_FILE = dag_file(
    "Written by scripts/real_airflow.py: mapped deletes sharing the quota, each capped at its part.",
    "from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator\n",
    """\
    VikingDBDeleteOperator.partial(
        task_id="delete", collection_name={collection!r}, rows_per_second={cap!r}
    ).expand(ids={chunks!r})
""",
)

DAG_FILE = dag_file(
    "Written by scripts/real_airflow.py: a load, its delete, and a sensor, both deferrable.",
    """\
from datetime import timedelta

from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator, VikingDBUpsertOperator
from airflow_provider_vikingdb.sensors.vikingdb import VikingDBIndexSyncSensor
""",
    """\
    load = VikingDBUpsertOperator(
        task_id="load",
        collection_name={collection!r},
        records=[{{"id": key, "text": f"row {{key}}"}} for key in {upserted!r}],
    )
    delete = VikingDBDeleteOperator(
        task_id="delete",
        collection_name={collection!r},
        ids=load.written_ids,
        wait_for_index={index!r},
        deferrable=True,
        index_settle=timedelta(seconds={settle}),
        index_poke_interval=timedelta(seconds=1),
        index_timeout=timedelta(minutes=3),
    )
    wait_index = VikingDBIndexSyncSensor(
        task_id="wait_index",
        collection_name={collection!r},
        index_name={index!r},
        ids=load.written_ids,
        deferrable=True,
        settle=pendulum.duration(seconds={settle}),
        poke_interval=timedelta(seconds=1),
        timeout=timedelta(minutes=3),
    )
    load >> delete >> wait_index
""",
)


# Run in the venv while the DAG runs: every trigger row of the metadata DB, with its kwargs as the
# triggerer rebuilds the trigger from them (decrypted and deserialized by Airflow's own model, so
# a timedelta would come back as one) and the triggerer job that took it. Trigger rows are deleted
# once their task has resumed: they can only be read while the task is deferred.
TRIGGER_WATCHER = """
import json, sys, time
from airflow.jobs.job import Job
from airflow.models.trigger import Trigger
from airflow.utils.session import create_session
from sqlalchemy import select

reported = set()
with open(sys.argv[1], "a") as out:
    while True:
        try:
            with create_session() as session:
                for trigger in session.scalars(select(Trigger)):
                    # SQLite hands a deleted row's id to the next trigger: the creation time tells them apart
                    key = (trigger.id, str(trigger.created_date), trigger.triggerer_id)
                    if key in reported:
                        continue
                    reported.add(key)
                    job = session.get(Job, trigger.triggerer_id) if trigger.triggerer_id else None
                    ti = trigger.task_instance
                    kwargs = {
                        key: {"type": type(value).__name__, "repr": repr(value)}
                        for key, value in trigger.kwargs.items()
                    }
                    line = {
                        "id": trigger.id,
                        "classpath": trigger.classpath,
                        "kwargs": kwargs,
                        "triggerer_id": trigger.triggerer_id,
                        "triggerer_job_type": job.job_type if job else None,
                        "task_id": ti.task_id if ti else None,
                    }
                    out.write(json.dumps(line) + "\\n")
                    out.flush()
        except Exception as exc:  # the scheduler may hold SQLite's lock: look again
            print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        time.sleep(0.3)
"""


# ---- processes ----


class Proc:
    """A process in a session of its own, logging to a file; stopped with its whole group."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> None:
        self.name, self.argv, self.env, self.log, self.cwd = name, argv, env, log, cwd
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its children (workers, parsers) share its group
            )
        return self

    def exited(self) -> int | None:
        return None if self.popen is None else self.popen.poll()

    def stop(self, grace: float = 30.0) -> str:
        """SIGTERM to the group, SIGKILL what is left after ``grace`` seconds."""
        if self.popen is None:
            return "not started"
        pgid = self.popen.pid  # start_new_session: the group's id is the leader's pid
        if self.popen.poll() is not None and not _group_alive(pgid):
            return f"had exited ({self.popen.returncode})"
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            self.popen.poll()
            if self.popen.returncode is not None and not _group_alive(pgid):
                return f"stopped ({self.popen.returncode})"
            time.sleep(0.2)
        _signal_group(pgid, signal.SIGKILL)
        self.popen.wait(timeout=10)
        return f"killed after {grace:g}s"

    def tail(self, lines: int = 25) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- HTTP ----


def http(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            status, raw = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


class Api:
    """Airflow's REST API (v2) with a token from the simple auth manager (all users are admins)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.headers: dict[str, str] = {}

    def login(self) -> None:
        status, body = http("GET", f"{self.base}/auth/token")
        if status not in (200, 201) or not isinstance(body, dict) or "access_token" not in body:
            raise RuntimeError(f"GET /auth/token answered {status}: {body!r}")
        self.headers = {"Authorization": f"Bearer {body['access_token']}"}

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
        status, answer = http(method, f"{self.base}/api/v2{path}", body, self.headers)
        if status not in ok:
            raise RuntimeError(f"{method} /api/v2{path} answered {status}: {answer!r}")
        return answer


def fetch(server_url: str, api_key: str, endpoint: str, ids: list[str]) -> dict[str, Any]:
    """Which of ``ids`` the server's collection (or index) holds, asked with its API key."""
    body: dict[str, Any] = {"collection_name": COLLECTION, "ids": ids}
    if endpoint == "fetch_in_index":
        body["index_name"] = INDEX
    status, answer = http(
        "POST",
        f"{server_url}/api/vikingdb/data/{endpoint}",
        body,
        {"Authorization": f"Bearer {api_key}"},
    )
    if status != 200 or not isinstance(answer, dict) or answer.get("code") != "Success":
        raise RuntimeError(f"{endpoint} answered {status}: {answer!r}")
    result: dict[str, Any] = answer["result"]
    return result


def present(server_url: str, api_key: str, endpoint: str, ids: list[str]) -> list[str]:
    return sorted(str(row["id"]) for row in fetch(server_url, api_key, endpoint, ids)["fetch"])


# ---- the run ----


class Checks:
    def __init__(self) -> None:
        self.results: list[tuple[bool, str]] = []

    def check(self, ok: bool, what: str) -> bool:
        self.results.append((ok, what))
        print(f"  [{'ok' if ok else 'FAIL'}] {what}", flush=True)
        return ok

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(ok for ok, _ in self.results)


def wait_for(
    what: str, probe: Callable[[], Any], timeout: float, procs: list[Proc], every: float = 1.0
) -> Any:
    """``probe()``'s first truthy answer; fails early when one of ``procs`` has exited."""
    deadline = time.monotonic() + timeout
    last_error = ""
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.exited() is not None:
                raise RuntimeError(
                    f"{proc.name} exited ({proc.exited()}) while waiting for {what}; "
                    f"the end of {proc.log}:\n{proc.tail()}"
                )
        try:
            answer = probe()
        except (OSError, RuntimeError) as exc:
            last_error = f" (last: {exc})"
        else:
            if answer:
                return answer
        time.sleep(every)
    raise RuntimeError(f"timed out after {timeout:g}s waiting for {what}{last_error}")


def airflow_env(home: Path, dags: Path, api_port: int, conn: str, jwt_secret: str) -> dict[str, str]:
    # Nothing Airflow-related from the caller (make exports AIRFLOW_HOME and the DAGs folder).
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIKINGDB_LOCAL"))}
    base = f"http://127.0.0.1:{api_port}"
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            # Workers reach the task execution API on the api-server: its default is port 8080.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
            "AIRFLOW__API__BASE_URL": base,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__WORKERS": "1",
            # The api-server signs task tokens and the workers' tokens are checked with it: one
            # secret for all processes (db migrate writes a random one to airflow.cfg, too).
            "AIRFLOW__API_AUTH__JWT_SECRET": jwt_secret,
            # Every request is an admin's: GET /auth/token hands out a token without a password.
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            # The scheduler's (LocalExecutor) and triggerer's log servers default to 8793 and
            # 8794: free ports, so that another Airflow on this machine does not collide.
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW_CONN_VIKINGDB_DEFAULT": conn,
        }
    )
    return env


def start_server(venv: Path, tmp: Path, secret_key: str, api_key: str) -> tuple[Proc, str]:
    records = tmp / "loaded.jsonl"
    keys = LOADED_IDS + [key for chunk in MAPPED_IDS for key in chunk]
    records.write_text("".join(json.dumps({"id": key, "text": "loaded"}) + "\n" for key in keys))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIKINGDB_LOCAL"))}
    # The keys by environment, not in argv where `ps` would show them.
    env.update({"VIKINGDB_LOCAL_SK": secret_key, "VIKINGDB_LOCAL_API_KEY": api_key})
    argv = [
        str(venv / "bin" / "vikingdb-local"),
        "--port",
        "0",
        "--collection",
        COLLECTION,
        "--load",
        str(records),
        "--index-lag",
        str(INDEX_LAG),
        "--ak",
        ACCESS_KEY,
        "--quota",
        str(QUOTA),
    ]
    proc = Proc("vikingdb-local", argv, env, tmp / "proc-logs" / "vikingdb-local.log", tmp).start()

    def ready() -> str | None:
        match = re.search(r"listening on (http://\S+)", proc.log.read_text(errors="replace"))
        return match.group(1) if match else None

    return proc, wait_for("vikingdb-local to listen", ready, 30, [proc], every=0.1)


def task_log_files(home: Path, task_id: str, dag_id: str = DAG_ID) -> tuple[list[Path], list[Path]]:
    """The task's try logs and its trigger logs (``<try log>.trigger.<triggerer job id>.log``)."""
    found = sorted((home / "logs").glob(f"dag_id={dag_id}/**/task_id={task_id}/**/*.log*"))
    tries = [p for p in found if ".trigger." not in p.name]
    triggers = [p for p in found if ".trigger." in p.name]
    return tries, triggers


def records(paths: list[Path]) -> list[dict[str, Any]]:
    """The JSON lines of Airflow's task and trigger logs (other lines skipped)."""
    out = []
    for path in paths:
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict):
                    out.append(record)
    return out


def event_payload(record: dict[str, Any]) -> dict[str, Any]:
    """The payload of a 'Trigger fired event' record: its ``result`` is ``TriggerEvent<{...}>``."""
    text = str(record.get("result") or record.get("event") or "")
    match = re.search(r"TriggerEvent<(\{.*\})>", text, re.S)
    if not match:
        return {}
    try:
        payload = ast.literal_eval(match.group(1))
    except (ValueError, SyntaxError):  # a value that has no literal repr: the check then fails
        return {}
    return payload if isinstance(payload, dict) else {}


def check_trigger(checks: Checks, task_id: str, watched: list[dict[str, Any]]) -> int | None:
    """The trigger row the task deferred to: our class, durations as floats, taken by a triggerer."""
    rows = [row for row in watched if row.get("task_id") == task_id and row.get("triggerer_id")]
    row = rows[0] if rows else {}
    kwargs = row.get("kwargs", {})
    checks.check(
        row.get("classpath") == TRIGGER_CLASS and row.get("triggerer_job_type") == "TriggererJob",
        f"{task_id}: deferred to trigger {row.get('id')} ({row.get('classpath')}), taken by triggerer job "
        f"{row.get('triggerer_id')} ({row.get('triggerer_job_type')})",
    )
    shown = {key: kwargs.get(key, {}).get("repr") for key in ("settle", "poke_interval", "deadline")}
    floats = all(kwargs.get(key, {}).get("type") == "float" for key in shown)
    ids = ast.literal_eval(kwargs["ids"]["repr"]) if "ids" in kwargs else None
    checks.check(
        floats
        and shown["settle"] == repr(float(SETTLE))
        and shown["poke_interval"] == "1.0"
        and sorted(ids or []) == UPSERTED_IDS,
        f"{task_id}: its kwargs, as the triggerer reads them back: settle={shown['settle']}, "
        f"poke_interval={shown['poke_interval']} (float seconds), {len(ids or [])} ids",
    )
    triggerer_id = row.get("triggerer_id")
    return triggerer_id if isinstance(triggerer_id, int) else None


def check_ran_and_resumed(checks: Checks, home: Path, task_id: str, triggerer_id: int | None) -> None:
    """The triggerer's log of the trigger, then the worker's: resumed with the trigger's event."""
    tries, trigger_logs = task_log_files(home, task_id)
    mine = [p for p in trigger_logs if p.name.endswith(f".trigger.{triggerer_id}.log")]
    trigger_records = records(mine)
    events = [str(r.get("event", "")) for r in trigger_records]
    # The trigger's own lines: Airflow 3.3 names its logger, 3.1 only the file it logged from.
    ours = [
        r
        for r in trigger_records
        if "airflow_provider_vikingdb" in str(r.get("logger", "")) or r.get("filename") == "vikingdb.py"
    ]
    fired = [event_payload(r) for r in trigger_records if r.get("event") == "Trigger fired event"]
    payload = fired[0] if fired else {}
    checks.check(
        any(e.startswith("trigger ") and e.endswith(" starting") for e in events)
        and any(str(r.get("event")).startswith("Waiting until index") for r in ours)
        and payload.get("status") == "success",
        f"{task_id}: the triggerer's log of it ({', '.join(p.name for p in mine) or 'no file'}): "
        f"'trigger ... starting', {len(ours)} lines of the trigger itself, 'Trigger fired event' "
        f"status={payload.get('status')} after {payload.get('looks')} looks, proof {payload.get('proof')}",
    )
    for record in ours[:3] + ours[-1:]:
        print(f"      triggerer| {str(record.get('timestamp', ''))[11:19]} {str(record.get('event'))[:150]}")
    try_records = records(tries)
    try_events = [str(r.get("event", "")) for r in try_records]
    deferred = next((i for i, e in enumerate(try_events) if e.startswith("Pausing task as DEFERRED")), None)
    message = f"{payload.get('message')}."
    resumed = (
        next((i for i, e in enumerate(try_events) if i > deferred and e == message), None)
        if deferred is not None and payload
        else None
    )
    # A new worker process parses the DAG file again before it resumes the task.
    restarted = deferred is not None and any(
        e.startswith("Filling up the DagBag") for e in try_events[deferred:resumed]
    )
    checks.check(
        deferred is not None and resumed is not None and restarted,
        f"{task_id}: its try log ({', '.join(p.name for p in tries) or 'no file'}): 'Pausing task as "
        "DEFERRED', then a new worker start, then execute_complete logging the trigger's message",
    )
    if resumed is not None:
        print(f"      worker   | {str(try_records[resumed].get('timestamp', ''))[11:19]} {message[:150]}")


AIRFLOW_PROCESSES = ("api-server", "scheduler", "dag-processor", "triggerer")


#: the error lines a task stopped by SIGTERM must log (the SIGTERM DAG's, checked by its own checks)
STOPPED_BY_SIGTERM = re.compile(
    r"Server indicated the task shouldn't be running anymore|interrupted: \d+ of \d+ ids acknowledged"
    rf"|{SIGTERM_DAG_ID}"
)


def error_lines(proc_logs: Path, home: Path) -> list[str]:
    """Error-level lines of Airflow's process logs and of the task and trigger logs, but for the
    ones the SIGTERM DAG's task must log."""
    found = []
    for name in AIRFLOW_PROCESSES:
        path = proc_logs / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        found += [
            f"{name}.log: {line}"
            for line in text.splitlines()
            if re.search(r"\[(error|critical)", line) and not STOPPED_BY_SIGTERM.search(line)
        ]
    for path in sorted((home / "logs").rglob("*.log*")):
        if f"dag_id={SIGTERM_DAG_ID}" in path.parts:
            continue
        for record in records([path]):
            if record.get("level") in ("error", "critical"):
                found.append(f"{path.name}: {record.get('event')} {record.get('error') or ''}".strip())
    return found


def grep_secret(tmp: Path, secret: str) -> tuple[list[Path], list[Path]]:
    """(files searched, files holding ``secret``) under ``tmp``: every file, logs and DB alike."""
    needle = secret.encode()
    searched, holding = [], []
    for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
        searched.append(path)
        if needle in path.read_bytes():
            holding.append(path)
    return searched, holding


def run(args: argparse.Namespace, tmp: Path, procs: list[Proc], checks: Checks) -> None:
    venv = args.venv.resolve()
    airflow = venv / "bin" / "airflow"
    if not airflow.exists():
        raise RuntimeError(f"{airflow} does not exist: run `make venv` (or `make lower-venv`) first")
    home, dags, proc_logs = tmp / "airflow-home", tmp / "dags", tmp / "proc-logs"
    for folder in (home, dags, proc_logs):
        folder.mkdir()
    (dags / f"{DAG_ID}.py").write_text(
        DAG_FILE.format(
            dag_id=DAG_ID, collection=COLLECTION, index=INDEX, upserted=UPSERTED_IDS, settle=SETTLE
        )
    )
    (dags / f"{SIGTERM_DAG_ID}.py").write_text(
        SIGTERM_DAG_FILE.format(dag_id=SIGTERM_DAG_ID, collection=COLLECTION, ids=SIGTERM_IDS)
    )
    (dags / f"{MAPPED_DAG_ID}.py").write_text(
        MAPPED_DAG_FILE.format(
            dag_id=MAPPED_DAG_ID, collection=COLLECTION, cap=QUOTA / MAPPED_TASKS, chunks=MAPPED_IDS
        )
    )
    secret_key, api_key = secrets.token_urlsafe(24), secrets.token_urlsafe(24)  # 32 characters each
    # 64 bytes or more: Airflow signs its tokens with HS512 and PyJWT warns about a shorter key.
    jwt_secret = secrets.token_urlsafe(64)

    server, server_url = start_server(venv, tmp, secret_key, api_key)
    procs.append(server)
    host, port = server_url.rsplit(":", 1)
    print(f"vikingdb-local at {server_url} (index lag {INDEX_LAG}s), collection {COLLECTION!r}: ", end="")
    print(f"{present(server_url, api_key, 'fetch_in_collection', LOADED_IDS)} loaded")
    conn = json.dumps(
        {
            "conn_type": "vikingdb",
            "host": host,  # the scheme in the URL: an extra "http" would be too short to mask
            "port": int(port),
            "login": ACCESS_KEY,
            "password": secret_key,
            "extra": {"region": "cn-beijing"},
        }
    )
    api_port = free_port()
    env = airflow_env(home, dags, api_port, conn, jwt_secret)
    if args.connection_in_db:
        del env["AIRFLOW_CONN_VIKINGDB_DEFAULT"]
        env["AIRFLOW__CORE__FERNET_KEY"] = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    version = subprocess.run(
        [str(airflow), "version"], env=env, capture_output=True, text=True, check=True, cwd=tmp
    ).stdout.strip()
    print(f"Airflow {version} from {venv}; AIRFLOW_HOME {home}")

    started = time.monotonic()
    with (proc_logs / "db-migrate.log").open("wb") as out:
        migrate = subprocess.run(
            [str(airflow), "db", "migrate"], env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT
        )
    if migrate.returncode:
        raise RuntimeError(
            f"airflow db migrate failed ({migrate.returncode}): see {proc_logs / 'db-migrate.log'}"
        )
    print(f"airflow db migrate: {time.monotonic() - started:.0f}s")
    if args.connection_in_db:
        with (proc_logs / "connections-add.log").open("wb") as out:
            added = subprocess.run(
                [str(airflow), "connections", "add", "vikingdb_default", "--conn-json", conn],
                env=env,
                cwd=tmp,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if added.returncode:
            raise RuntimeError(f"airflow connections add failed: see {proc_logs / 'connections-add.log'}")
        print("connection vikingdb_default stored in the metadata DB (Fernet-encrypted)")

    airflow_procs = []
    for name in AIRFLOW_PROCESSES:
        proc = Proc(name, [str(airflow), name], env, proc_logs / f"{name}.log", tmp).start()
        procs.append(proc)
        airflow_procs.append(proc)
    pids = ", ".join(f"{p.name} (pid {p.popen.pid if p.popen else '?'})" for p in airflow_procs)
    print(f"started: {pids}")
    watched_file = proc_logs / "triggers.jsonl"
    watcher = Proc(
        "trigger watcher",
        [str(venv / "bin" / "python"), "-c", TRIGGER_WATCHER, str(watched_file)],
        env,
        proc_logs / "trigger-watcher.log",
        tmp,
    ).start()
    procs.append(watcher)

    api = Api(f"http://127.0.0.1:{api_port}")
    started = time.monotonic()
    wait_for(
        "the api-server",
        lambda: http("GET", f"{api.base}/api/v2/monitor/health")[0] == 200,
        120,
        airflow_procs,
    )
    api.login()
    print(f"api-server answers at {api.base} ({time.monotonic() - started:.0f}s)")

    run_id = parse_and_trigger(api, DAG_ID, airflow_procs)
    print(
        f"DAG {DAG_ID!r} parsed, unpaused and triggered: run {run_id!r}"
        f" ({time.monotonic() - started:.0f}s after start-up)"
    )

    # Poll the run; print each task's state as it changes (a deferral shows as 'deferred').
    started = time.monotonic()
    seen: dict[str, list[str]] = {task: [] for task in TASKS}

    def finished() -> str | None:
        state = api.call("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}")["state"]
        for ti in api.call("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]:
            states = seen.setdefault(ti["task_id"], [])
            if ti["state"] and (not states or states[-1] != ti["state"]):
                states.append(ti["state"])
                print(f"  {time.monotonic() - started:5.1f}s  {ti['task_id']}: {ti['state']}", flush=True)
        return str(state) if state in ("success", "failed") else None

    run_state = wait_for(
        f"run {run_id!r} to finish", finished, RUN_TIMEOUT, [*airflow_procs, watcher], every=0.5
    )
    print(f"run {run_id!r} finished in {time.monotonic() - started:.0f}s")
    procs.remove(watcher)
    watcher.stop()
    watched = records([watched_file]) if watched_file.exists() else []

    print("\nChecks:")
    checks.check(run_state == "success", f"the run's final state is {run_state}")
    tis = {
        ti["task_id"]: ti
        for ti in api.call("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances")["task_instances"]
    }
    for task in TASKS:
        ti = tis.get(task, {})
        checks.check(
            ti.get("state") == "success",
            f"task {task}: {ti.get('state')} (try {ti.get('try_number')}; states seen: "
            f"{' -> '.join(seen.get(task, [])) or 'none'})",
        )
    xcom: dict[str, Any] = {}
    for task in ("load", "delete", "wait_index"):
        xcom[task] = return_value(api, f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task}")
    load, delete, sensor = (xcom.get(task) or {} for task in ("load", "delete", "wait_index"))
    print(f"      load: {load.get('ids_written')} ids written in {load.get('batches')} batch(es)")
    for task, summary in (("delete", delete), ("wait_index", sensor)):
        print(
            f"      {task}: {summary.get('ids_deleted', '-')} deleted; index synced"
            f" {summary.get('index_synced')} after {summary.get('index_looks')} look(s), proof"
            f" {summary.get('index_proof')}, waited {summary.get('index_wait_seconds')}s"
        )
    checks.check(
        load.get("ids_written") == len(UPSERTED_IDS)
        and delete.get("ids_deleted") == len(UPSERTED_IDS)
        and delete.get("index_synced") is True
        and sensor.get("index_synced") is True
        and sensor.get("index_checked_ids") == len(UPSERTED_IDS),
        f"XComs: load wrote {len(UPSERTED_IDS)}, delete deleted them and saw the index synced, the sensor "
        "checked them all and saw it synced",
    )

    for task in DEFERRED_TASKS:
        triggerer_id = check_trigger(checks, task, watched)
        check_ran_and_resumed(checks, home, task, triggerer_id)

    in_collection = present(server_url, api_key, "fetch_in_collection", UPSERTED_IDS)
    in_index = present(server_url, api_key, "fetch_in_index", UPSERTED_IDS)
    kept = present(server_url, api_key, "fetch_in_collection", LOADED_IDS)
    checks.check(
        not in_collection and not in_index,
        f"the {len(UPSERTED_IDS)} upserted records are gone from the server: {len(in_collection)} in the "
        f"collection, {len(in_index)} in index {INDEX!r}",
    )
    checks.check(kept == LOADED_IDS, f"the {len(LOADED_IDS)} loaded records are still there: {kept}")

    sigterm_scenario(api, home, server_url, api_key, airflow_procs, checks)
    mapped_scenario(api, server.log, server_url, api_key, airflow_procs, checks)

    # Stop first, so that the processes' last words are in the files too.
    print("\nStopping the processes ...")
    stop_all(procs)
    errors = error_lines(proc_logs, home)
    checks.check(
        not errors, f"no error-level line in the Airflow process, task or trigger logs ({len(errors)})"
    )
    for line in errors[:12]:
        print(f"      {line[:300]}")
    searched, holding = grep_secret(tmp, secret_key)
    logs = [p for p in searched if p.suffix == ".log"]
    checks.check(
        not holding and len(logs) > 0,
        f"the secret key is in none of the {len(searched)} files under the temp dir ({len(logs)} log files: "
        f"{len([p for p in logs if p.parent == proc_logs])} process logs, "
        f"{len([p for p in logs if home / 'logs' in p.parents])} task/trigger/processor logs)"
        + (f"; FOUND in: {', '.join(str(p.relative_to(tmp)) for p in holding)}" if holding else ""),
    )


def written(server_url: str, api_key: str, ids: list[str]) -> int:
    """How many of ``ids`` the collection holds (asked 100 at a time, as the service takes them)."""
    return sum(
        len(present(server_url, api_key, "fetch_in_collection", ids[i : i + 100]))
        for i in range(0, len(ids), 100)
    )


def sigterm_scenario(
    api: Api, home: Path, server_url: str, api_key: str, procs: list[Proc], checks: Checks
) -> None:
    """Mark a running load failed, as a user does in the UI: the supervisor sends the task SIGTERM
    (SIGKILL 5 s later), and the operator must stop at once, say what it wrote, and fail."""
    print(
        f"\nSIGTERM: DAG {SIGTERM_DAG_ID!r} loads {len(SIGTERM_IDS)} rows at {QUOTA} rows/s, "
        "and is marked failed mid-way"
    )
    run_id = parse_and_trigger(api, SIGTERM_DAG_ID, procs)
    ti_path = f"/dags/{SIGTERM_DAG_ID}/dagRuns/{run_id}/taskInstances/load"
    wait_for(
        "the load to run and write 300 rows",
        lambda: (
            api.call("GET", ti_path)["state"] == "running"
            and written(server_url, api_key, SIGTERM_IDS) >= 300
        ),
        RUN_TIMEOUT,
        procs,
        every=0.5,
    )
    marked = time.monotonic()
    api.call("PATCH", ti_path, {"new_state": "failed"})
    print(f"  marked the running load failed, with {written(server_url, api_key, SIGTERM_IDS)} rows written")

    def said() -> str | None:
        text = "\n".join(
            p.read_text(errors="replace") for p in task_log_files(home, "load", SIGTERM_DAG_ID)[0]
        )
        return text if "received SIGTERM" in text and "interrupted:" in text else None

    log = wait_for("the load's log to say it was stopped", said, 60, procs, every=0.5)
    stopped = time.monotonic() - marked
    time.sleep(2)  # requests in flight when it stopped have landed by now
    after = written(server_url, api_key, SIGTERM_IDS)
    time.sleep(3)
    later = written(server_url, api_key, SIGTERM_IDS)
    found = re.search(r"interrupted: (\d+) of (\d+) ids acknowledged", log)
    acknowledged = int(found.group(1)) if found else -1
    state = api.call("GET", ti_path)["state"]
    checks.check(
        "VikingDBUpsertOperator 'load' received SIGTERM" in log and found is not None,
        f"the supervisor's SIGTERM reached the operator {stopped:.1f}s after the task was marked failed, "
        f"and its log says what was done: {found.group(0) if found else 'no interrupted line'}",
    )
    checks.check(
        after == later < len(SIGTERM_IDS) and acknowledged <= after <= acknowledged + 400,
        f"nothing more was written after it stopped: {after} rows 2 s after, {later} 5 s after "
        f"({acknowledged} acknowledged; up to 4 requests in flight may land unacknowledged)",
    )
    checks.check(state == "failed", f"the load's final state is {state}")


def mapped_scenario(
    api: Api, server_log: Path, server_url: str, api_key: str, procs: list[Proc], checks: Checks
) -> None:
    """Mapped deletes in worker processes of their own, at once, each with ``rows_per_second`` at
    the quota / their number (docs/performance.md): none is locked out, and all of it is deleted."""
    cap = QUOTA / MAPPED_TASKS
    ids = [key for chunk in MAPPED_IDS for key in chunk]
    print(
        f"\nMapped: DAG {MAPPED_DAG_ID!r} deletes {len(ids)} ids in {MAPPED_TASKS} mapped tasks, "
        f"each capped at rows_per_second={cap:g} (the quota / {MAPPED_TASKS})"
    )
    logged = len(server_log.read_text(errors="replace").splitlines())
    run_id = parse_and_trigger(api, MAPPED_DAG_ID, procs)
    run_path = f"/dags/{MAPPED_DAG_ID}/dagRuns/{run_id}"

    def finished() -> str | None:
        state = api.call("GET", run_path)["state"]
        return str(state) if state in ("success", "failed") else None

    state = wait_for(f"run {run_id!r} to finish", finished, RUN_TIMEOUT, procs, every=0.5)
    tis = [
        ti
        for ti in api.call("GET", f"{run_path}/taskInstances")["task_instances"]
        if ti["task_id"] == "delete"
    ]
    states = sorted(str(ti["state"]) for ti in tis)
    checks.check(
        state == "success" and states == ["success"] * MAPPED_TASKS,
        f"the run is {state}, its mapped deletes {', '.join(states) or 'none'}",
    )
    starts = [_when(ti["start_date"]) for ti in tis if ti.get("start_date")]
    ends = [_when(ti["end_date"]) for ti in tis if ti.get("end_date")]
    together = min(ends) - max(starts) if starts and ends else 0.0
    checks.check(
        len(starts) == MAPPED_TASKS and together > 0,
        f"the {MAPPED_TASKS} mapped tasks ran at once, in processes of their own: all {MAPPED_TASKS} "
        f"running for {together:.1f}s (first start to last end: {max(ends) - min(starts):.1f}s)"
        if starts and ends
        else "the mapped tasks have no start and end dates",
    )
    answers: dict[str, int] = {}
    for line in server_log.read_text(errors="replace").splitlines()[logged:]:
        found = re.search(r"POST /api/vikingdb/data/delete (\S+)", line)
        if found:
            answers[found.group(1)] = answers.get(found.group(1), 0) + 1
    summaries = [
        return_value(api, f"{run_path}/taskInstances/delete", index) or {} for index in range(MAPPED_TASKS)
    ]
    deleted = [summary.get("ids_deleted") for summary in summaries]
    throttled = [summary.get("throttled") for summary in summaries]
    # The server's bucket holds one second of quota: 3 batches of 100 at 300 rows/s, fewer than the
    # 4 tasks. Started together, one finds it empty; it must not be refused again and again.
    checks.check(
        deleted == [len(chunk) for chunk in MAPPED_IDS]
        and all(isinstance(n, int) and n <= 2 for n in throttled),
        f"each mapped task deleted its {len(MAPPED_IDS[0])} ids and none was locked out: deleted {deleted}, "
        f"throttled {throttled} times (at most 2 each; the server answered {answers})",
    )
    left = written(server_url, api_key, ids)
    checks.check(left == 0, f"all {len(ids)} ids are gone from the collection ({left} left)")


def _when(stamp: str) -> float:
    """Seconds since the epoch of an API timestamp (ISO 8601, ``Z`` or an offset)."""
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def parse_and_trigger(api: Api, dag_id: str, procs: list[Proc]) -> str:
    """Wait until ``dag_id`` is parsed (an import error stops the script), unpause it and trigger
    a run: its id."""

    def parsed() -> bool:
        errors = api.call("GET", "/importErrors")
        if errors.get("total_entries"):
            raise SystemExit(f"the DAG file did not import: {json.dumps(errors['import_errors'], indent=1)}")
        return bool(http("GET", f"{api.base}/api/v2/dags/{dag_id}", headers=api.headers)[0] == 200)

    wait_for(f"DAG {dag_id!r} to be parsed", parsed, PARSE_TIMEOUT, procs, every=2)
    api.call("PATCH", f"/dags/{dag_id}", {"is_paused": False})
    return str(api.call("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None})["dag_run_id"])


def return_value(api: Api, ti_path: str, map_index: int | None = None) -> Any:
    """A task instance's return value (a JSON object's text decoded), or None if it has none."""
    query = "" if map_index is None else f"?map_index={map_index}"
    entry = api.call("GET", f"{ti_path}/xcomEntries/return_value{query}", ok=(200, 404))
    value = entry.get("value") if isinstance(entry, dict) else None
    return json.loads(value) if isinstance(value, str) and value.startswith("{") else value


def stop_all(procs: list[Proc]) -> None:
    # The reverse of the start order: Airflow's processes before the server they talk to.
    while procs:
        proc = procs.pop()
        print(f"  {proc.name}: {proc.stop()}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv", help="the virtualenv (default .venv)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir even when every check passes")
    parser.add_argument(
        "--connection-in-db",
        action="store_true",
        help="store the connection in the metadata DB (Fernet-encrypted, as the UI does) instead of "
        "AIRFLOW_CONN_VIKINGDB_DEFAULT: workers and the triggerer then get it from the api-server",
    )
    args = parser.parse_args()

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="vikingdb-real-airflow-"))
    procs: list[Proc] = []
    checks = Checks()
    error = ""

    def interrupted(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Ctrl-C, kill and a closed terminal all stop what was started. SIGINT explicitly: a shell
    # starts a background job with it ignored, and Python then leaves it ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupted)
    try:
        run(args, tmp, procs, checks)
    except KeyboardInterrupt:
        error = "interrupted"
    except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
        error = str(exc)
    except SystemExit as exc:
        error = str(exc.code)
    finally:
        # A second Ctrl-C must not leave Airflow's processes running behind us.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if procs:
            print("\nStopping the processes ...")
            stop_all(procs)
    if error:
        print(f"\nERROR: {textwrap.indent(error, '  ').strip()}")
    ok = checks.passed and not error
    wall = time.monotonic() - started
    if ok and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
        where = "temp dir removed"
    else:
        where = f"logs, DB and DAG file kept in {tmp}"
    failed = sum(1 for good, _ in checks.results if not good)
    why = f", {error.splitlines()[0].rstrip(':')}" if error else ""
    print(
        f"\n{'PASSED' if ok else 'FAILED'}: {len(checks.results) - failed} of {len(checks.results)}"
        f" checks held{why}; {wall:.0f}s wall time; {where}."
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
