"""Upsert throughput at the quota: VikingDBHook.upsert (list and stream) against ``vikingdb-local``.

    .venv/bin/python bench/upsert_throughput.py            # --quota 1500 --latency-ms 30 --rows 30000
    .venv/bin/python bench/upsert_throughput.py --quota 15000 --rows 150000

Each mode runs against a fresh server (empty collection, full bucket) in this process's
client; the server is its own process. "% allowed" is the shortest time the quota allows
((rows - burst) / quota, the burst being the one second of quota the bucket holds at start)
over the run's time; "lost" = rows acknowledged by neither the summary nor the collection
(fetch_in_collection afterwards); 429 = throttled attempts seen by the server.
Modes: ``list`` (a list of dicts, as records=...), ``stream`` (a generator, as records_path
streams a file: chunks of batch_size * 16 * concurrency rows).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import count_left, hook_for, local_server, write_records

_UPSERT = re.compile(r"POST /api/vikingdb/data/upsert (\d{3}|-) ")


def make_rows(count: int) -> list[dict]:
    return [{"id": f"u_{n:07d}", "title": f"row {n}", "n": n} for n in range(count)]


def answers(log_path: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    with open(log_path, encoding="utf-8") as log:
        for line in log:
            if match := _UPSERT.search(line):
                counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    return counts


def measure(mode: str, count: int, quota: float, latency_ms: float) -> dict:
    rows = make_rows(count)
    empty = write_records([])
    with local_server(empty, quota=quota, latency_ms=latency_ms) as server:
        hook = hook_for(server.url)
        hook.max_concurrency = 8
        hook.ping()
        acked: list[int] = []
        source = rows if mode == "list" else (dict(r) for r in rows)
        started = time.perf_counter()
        result = hook.upsert(source, collection_name="bench", on_batch=lambda b, e: acked.append(len(b)))
        seconds = time.perf_counter() - started
        hook.close()
        ids = [r["id"] for r in rows]
        present = count_left(server.url, ids)  # how many of ids the collection holds
        seen = answers(server.log_path)
    allowed = max(count - quota, 0) / quota
    return {
        "mode": mode,
        "seconds": seconds,
        "rows_per_s": count / seconds,
        "pct_allowed": 100 * allowed / seconds,
        "written": result.ids_done,
        "acked": sum(acked),
        "present": present,
        "lost": count - present,
        "throttled": seen.get("429", 0),
        "attempts": sum(seen.values()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quota", type=float, default=1500)
    parser.add_argument("--latency-ms", type=float, default=30)
    parser.add_argument("--rows", type=int, default=30000)
    parser.add_argument("--modes", default="list,stream")
    args = parser.parse_args()
    print(
        f"upsert of {args.rows} rows, quota {args.quota:g} rows/s, latency {args.latency_ms:g} ms, "
        "8 requests in flight"
    )
    head = f"{'mode':<8} {'seconds':>8} {'rows/s':>8} {'% allowed':>9} {'written':>8} {'in coll.':>8}"
    head += f" {'lost':>5} {'429 (share)':>13}"
    print(head)
    print("-" * len(head))
    for mode in args.modes.split(","):
        r = measure(mode, args.rows, args.quota, args.latency_ms)
        share = f"{r['throttled']} ({100 * r['throttled'] / max(r['attempts'], 1):.1f}%)"
        print(
            f"{r['mode']:<8} {r['seconds']:>8.1f} {r['rows_per_s']:>8.0f} {r['pct_allowed']:>8.1f}% "
            f"{r['written']:>8} {r['present']:>8} {r['lost']:>5} {share:>13}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
