"""The local server as a separate process for the benchmarks, and what it saw.

A separate process, so its CPU is not the client's: ``vikingdb-local`` with the
records loaded from a file at start (no quota spent on loading) and its per-request
log on stderr, from which the answers to deletes are counted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from delete_client import AK, SK, use_connection

BIN = Path(sys.executable).parent
_LINE = re.compile(r"POST /api/vikingdb/data/delete (\d{3}|-) ")


@dataclass
class Server:
    url: str
    log_path: str

    def delete_answers(self) -> Counter:
        """HTTP status of every delete the server answered, from its log."""
        counts: Counter = Counter()
        with open(self.log_path, encoding="utf-8") as log:
            for line in log:
                match = _LINE.search(line)
                if match:
                    counts[match.group(1)] += 1
        return counts


def write_records(ids: list[str]) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as records:
        records.writelines(json.dumps({"id": i}) + "\n" for i in ids)
    return records.name


@contextmanager
def local_server(
    records_file: str,
    *,
    quota: float | None,
    latency_ms: float,
    collection: str = "bench",
    extra: tuple[str, ...] = (),
    quota_burst: float = 1.0,
) -> Iterator[Server]:
    command = [str(BIN / "vikingdb-local"), "--port", "0", "--collection", collection, "--ak", AK, "--sk", SK]
    command += list(extra)
    command += ["--load", records_file, "--latency-ms", str(latency_ms), "--log-level", "INFO"]
    if quota is not None:
        command += ["--quota", str(quota), "--quota-burst", str(quota_burst)]
    with tempfile.NamedTemporaryFile("w", suffix=".log", delete=False) as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            line = process.stdout.readline()
            if not line.startswith("vikingdb-local listening on "):
                raise SystemExit(f"server did not start: {line!r}; see {log.name}")
            yield Server(line.rsplit(" ", 1)[1].strip(), log.name)
        finally:
            process.terminate()
            process.wait(timeout=10)
    os.unlink(log.name)


def hook_for(url: str):
    """A VikingDBHook on ``url`` (for counting what is left), through the env-var connection."""
    use_connection(url)
    from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook

    return VikingDBHook(max_concurrency=16)


def count_left(url: str, ids: list[str], collection: str = "bench") -> int:
    """How many of ``ids`` the collection still holds (fetch_in_collection has no write quota)."""
    from airflow_provider_vikingdb.hooks.vikingdb import FETCH_IN_COLLECTION_PATH

    hook = hook_for(url)

    def found(start: int) -> int:
        body = {"collection_name": collection, "ids": ids[start : start + 100]}
        return len((hook.request(FETCH_IN_COLLECTION_PATH, body).get("result") or {}).get("fetch") or [])

    with ThreadPoolExecutor(16) as pool:
        left = sum(pool.map(found, range(0, len(ids), 100)))
    hook.close()
    return left
