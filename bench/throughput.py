"""Delete throughput against the local server run as ``vikingdb-local``: template vs SDK vs hook.

    .venv/bin/python bench/throughput.py                    # quota run: --quota 1500 --latency-ms 30
    .venv/bin/python bench/throughput.py --no-quota         # same latency, no quota
    .venv/bin/python bench/throughput.py --quota 15000      # a raised quota

Each client runs in a fresh interpreter of its own (``bench/delete_client.py``) against
a fresh server (full bucket, all ids loaded). The server counts the answers (its log);
after each run the ids still in the collection are counted with fetch_in_collection.

Columns: deleted/s = ids actually deleted / wall seconds; "% allowed" = the shortest
time the quota allows for the run ((ids - burst) / quota, the burst being one second of
quota as the service's bucket holds) / the run's time; 429 = throttled attempts and their
share of all attempts; CPU/batch = the client's process CPU time over the delete / batches.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import count_left, local_server, write_records
from delete_client import make_ids

HERE = Path(__file__).resolve().parent
LABELS = {"template": "(a) request template", "sdk": "(b) official SDK", "hook": "(c) VikingDBHook"}


def run_client(kind: str, url: str, count: int) -> dict:
    command = [sys.executable, str(HERE / "delete_client.py"), kind, "--url", url, "--ids", str(count)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"{kind} client failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(kind: str, records: str, ids: list[str], quota: float | None, latency_ms: float) -> dict:
    with local_server(records, quota=quota, latency_ms=latency_ms) as server:
        result = run_client(kind, server.url, len(ids))
        result["left"] = count_left(server.url, ids)
        answers = server.delete_answers()
    result["attempts"] = sum(answers.values())
    result["throttled"] = answers.get("429", 0)
    result["deleted"] = len(ids) - result["left"]
    return result


def table(results: dict[str, dict], count: int, quota: float | None) -> str:
    head = f"{'client':<22} {'seconds':>8} {'deleted/s':>9}"
    if quota:
        head += f" {'% nominal':>9} {'% allowed':>9}"
    head += f" {'429 (share)':>13} {'failed batches':>14} {'ids left':>8} {'CPU ms/batch':>12}"
    lines = [head, "-" * len(head)]
    for kind, r in results.items():
        rate = r["deleted"] / r["seconds"]
        row = f"{LABELS[kind]:<22} {r['seconds']:>8.1f} {rate:>9.0f}"
        if quota:
            allowed = max(count - quota, 0) / quota
            row += f" {100 * rate / quota:>8.1f}% {100 * allowed / r['seconds']:>8.1f}%"
        share = 100 * r["throttled"] / max(r["attempts"], 1)
        row += f" {r['throttled']:>6} ({share:>4.1f}%) {r['failed']:>14} {r['left']:>8}"
        row += f" {1000 * r['cpu'] / r['batches']:>12.2f}"
        lines.append(row)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quota", type=float, default=1500.0, help="rows/s per collection (default 1500)")
    parser.add_argument("--no-quota", action="store_true", help="run the server without a quota")
    parser.add_argument("--latency-ms", type=float, default=30.0, help="server latency (default 30)")
    parser.add_argument("--ids", type=int, default=60_000, help="ids to delete (default 60000)")
    parser.add_argument("--clients", default="template,sdk,hook", help="comma-separated subset")
    args = parser.parse_args(argv)
    quota = None if args.no_quota else args.quota
    ids = make_ids(args.ids)
    records = write_records(ids)
    what = f"quota {quota:g} rows/s" if quota else "no quota"
    print(f"\n## {args.ids} ids, {what}, latency {args.latency_ms:g} ms (server: vikingdb-local process)")
    results: dict[str, dict] = {}
    try:
        for kind in args.clients.split(","):
            results[kind] = measure(kind, records, ids, quota, args.latency_ms)
            print(f"  {kind}: {json.dumps(results[kind])}", file=sys.stderr, flush=True)
    finally:
        os.unlink(records)
    print(table(results, args.ids, quota))
    rates = {kind: r["deleted"] / r["seconds"] for kind, r in results.items()}
    cpu = {kind: r["cpu"] / r["batches"] for kind, r in results.items()}
    others = [kind for kind in rates if kind != "hook"]
    if "hook" in rates and others:
        if quota:
            for kind in others:
                print(f"hook time / {kind} time: {results['hook']['seconds'] / results[kind]['seconds']:.3f}")
        else:
            faster = max(others, key=rates.get)
            print(f"hook rows/s / faster of the others ({faster}): {rates['hook'] / rates[faster]:.2f}x")
        lower = min(others, key=cpu.get)
        print(f"hook CPU per batch / lower of the others ({lower}): {cpu['hook'] / cpu[lower]:.2f}x")
    return results


if __name__ == "__main__":
    main()
