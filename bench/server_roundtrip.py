"""Round trip of a signed 100-id delete against the local VikingDB server.

Sends N deletes of 100 ids each over one keep-alive ``requests.Session``, each signed
anew with volcengine's SignerV4 (as a real client must), and prints the median and p90
of the HTTP round trip (signing excluded, reported separately).

    .venv/bin/python bench/server_roundtrip.py               # server in this process
    .venv/bin/python bench/server_roundtrip.py --subprocess  # server as `python -m ...local`

In-process, client and server share one GIL, so the figure includes contention the
subprocess mode does not have.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import requests
from volcengine.auth.SignerV4 import SignerV4
from volcengine.base.Request import Request
from volcengine.Credentials import Credentials

from airflow_provider_vikingdb.local import LocalVikingDB

PATH = "/api/vikingdb/data/delete"
BATCH = 100
WARMUP = 20


def batches(count: int) -> list[list[str]]:
    return [[f"id_{n:05d}_{k:03d}" for k in range(BATCH)] for n in range(count)]


@contextmanager
def in_process(ids: list[list[str]]) -> Iterator[str]:
    with LocalVikingDB(collections=("bench",)) as server:
        server.load("bench", [{"id": i} for batch in ids for i in batch])
        yield server.url


@contextmanager
def as_subprocess(ids: list[list[str]]) -> Iterator[str]:
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as records:
        for batch in ids:
            for i in batch:
                records.write(json.dumps({"id": i}) + "\n")
    command = [sys.executable, "-m", "airflow_provider_vikingdb.local", "--port", "0"]
    command += ["--collection", "bench", "--load", records.name, "--log-level", "WARNING"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        if not line.startswith("vikingdb-local listening on "):
            raise SystemExit(f"server did not start: {line!r}")
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(timeout=10)
        os.unlink(records.name)


def signed(body: str, credentials: Credentials) -> dict[str, str]:
    request = Request()
    request.set_method("POST")
    request.set_path(PATH)
    request.set_headers({"Accept": "application/json", "Content-Type": "application/json"})
    request.set_body(body)
    SignerV4.sign(request, credentials)
    return dict(request.headers)


def run(url: str, ids: list[list[str]]) -> tuple[list[float], list[float]]:
    credentials = Credentials("AK", "SK", "vikingdb", "cn-beijing")
    session = requests.Session()
    round_trips, signing = [], []
    for n, batch in enumerate(ids):
        body = json.dumps({"collection_name": "bench", "ids": batch})
        started = time.perf_counter()
        headers = signed(body, credentials)
        sent = time.perf_counter()
        response = session.post(url + PATH, data=body.encode(), headers=headers, timeout=10)
        done = time.perf_counter()
        if response.status_code != 200:
            raise SystemExit(f"request {n}: HTTP {response.status_code} {response.text}")
        if n >= WARMUP:
            signing.append((sent - started) * 1000)
            round_trips.append((done - sent) * 1000)
    session.close()
    return round_trips, signing


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=500, help="measured requests (default 500)")
    parser.add_argument("--subprocess", action="store_true", help="run the server as a separate process")
    args = parser.parse_args()
    ids = batches(args.requests + WARMUP)
    server = as_subprocess if args.subprocess else in_process
    with server(ids) as url:
        round_trips, signing = run(url, ids)
    mode = "subprocess" if args.subprocess else "in-process"
    print(
        f"{len(round_trips)} signed {BATCH}-id deletes, one keep-alive session, server {mode}: "
        f"round trip median {statistics.median(round_trips):.2f} ms, p90 {p90(round_trips):.2f} ms; "
        f"signing median {statistics.median(signing):.2f} ms"
    )


if __name__ == "__main__":
    main()
