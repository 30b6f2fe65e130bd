"""What "the first batch goes alone" costs: one round trip before the fan-out, against the run.

    .venv/bin/python bench/first_batch.py                  # no quota, 20 000 ids, 30 ms latency
    .venv/bin/python bench/first_batch.py --quota 1500     # at the default quota

The hook sends batch 1 alone and starts its ``max_concurrency`` workers only once it was
acknowledged, so a wrong collection or wrong credentials cost one request. The price is the
time batch 1 takes on its own; the table gives it, the whole run, and its share.
Each run is a fresh ``vikingdb-local`` process (the server's CPU is not the client's).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import hook_for, local_server, write_records
from delete_client import make_ids


def one_run(ids: list[str], quota: float | None, latency_ms: float) -> tuple[float, float]:
    records = write_records(ids)
    with local_server(records, quota=quota, latency_ms=latency_ms) as server:
        hook = hook_for(server.url)
        started = time.monotonic()
        first: list[float] = []

        def on_batch(batch, envelope) -> None:
            if not first:
                first.append(time.monotonic() - started)

        hook.delete(ids, collection_name="bench", on_batch=on_batch)
        total = time.monotonic() - started
        hook.close()
    Path(records).unlink()
    return first[0], total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=20_000)
    parser.add_argument("--quota", type=float, default=None)
    parser.add_argument("--latency-ms", type=float, default=30)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ids = make_ids(args.ids)
    rows = [one_run(ids, args.quota, args.latency_ms) for _ in range(args.runs)]
    firsts, totals = [r[0] for r in rows], [r[1] for r in rows]
    quota = f"quota {args.quota:g} rows/s" if args.quota else "no quota"
    print(f"{args.ids} ids, {quota}, {args.latency_ms:g} ms latency, {args.runs} runs (median)")
    print("| batch 1 alone (ms) | whole run (s) | share of the run |")
    print("|---|---|---|")
    first, total = statistics.median(firsts), statistics.median(totals)
    print(f"| {first * 1000:.1f} | {total:.2f} | {first / total:.1%} |")


if __name__ == "__main__":
    main()
