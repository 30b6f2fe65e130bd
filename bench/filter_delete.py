"""Delete by filter: throughput against the quota, and peak memory against the match count.

    .venv/bin/python bench/filter_delete.py throughput   # 200 000 records, 100 000 match, ~3 min
    .venv/bin/python bench/filter_delete.py memory       # tracemalloc, 0 .. 100 000 matches

throughput: ``vikingdb-local --quota 1500 --index-lag 3`` as its own process, 200 000
records loaded (no quota spent), half of them older than the cutoff; one
``VikingDBHook.delete_by_filter`` with ``sort_field`` and one without, each on a fresh
server. "% of quota" is the shortest delete time the quota allows, ((matched - 1500 burst)
/ 1500 s), over the delete phase (searching and deleting; the index wait and the final
count excluded, shown apart).

memory: the same call (what the operator runs: count, pages, deletes, the index wait,
the verification) against a server without quota or lag, in a fresh tracemalloc peak per
run; the server is another process, so only the client is measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import tracemalloc

from _server import hook_for, local_server

COLLECTION = "bench"
CUTOFF = 1_700_000_000
FIELDS = ("--field", f"{COLLECTION}:created_at:int64", "--field", f"{COLLECTION}:source:string")
FILTER = {"op": "range", "field": "created_at", "lt": CUTOFF}


def write_records(total: int, matching: int) -> str:
    """``total`` records, ``matching`` of them older than CUTOFF (one per second, so few ties)."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as out:
        for n in range(total):
            created = CUTOFF - matching + n  # the first ``matching`` are below the cutoff
            out.write(json.dumps({"id": f"doc-{n:07d}", "created_at": created, "source": "crm"}) + "\n")
    return out.name


def throughput(args: argparse.Namespace) -> None:
    records = write_records(args.records, args.matching)
    print(
        f"\n## delete by filter: {args.records:,} records, {args.matching:,} match; "
        f"quota {args.quota:g} rows/s, index lag {args.index_lag:g} s"
    )
    print(
        f"{'':<22} {'matched':>8} {'deleted':>8} {'pages':>6} {'passes':>6} {'delete s':>9} "
        f"{'% of quota':>10} {'429':>5} {'verify s':>9} {'left':>5}"
    )
    for label, sort_field in (("sort_field=created_at", "created_at"), ("no sort_field", None)):
        extra = (*FIELDS, "--index-lag", str(args.index_lag))
        with local_server(records, quota=args.quota, latency_ms=args.latency_ms, extra=extra) as server:
            hook = hook_for(server.url)
            result = hook.delete_by_filter(
                index_name=f"{COLLECTION}_index",
                collection_name=COLLECTION,
                filter=FILTER,
                sort_field=sort_field,
                settle=args.index_lag + 5,
                poke_interval=1.0,
            )
            hook.close()
        ideal = max(result.matched - args.quota, 0) / args.quota
        print(
            f"{label:<22} {result.matched:>8} {result.ids_deleted:>8} {result.pages:>6} {result.passes:>6} "
            f"{result.delete_seconds:>9.1f} {100 * ideal / result.delete_seconds:>9.1f}% "
            f"{result.throttled:>5} {result.verify_seconds:>9.1f} {result.remaining:>5}",
            flush=True,
        )


def memory(args: argparse.Namespace) -> None:
    counts = [0, 10_000, 50_000, 100_000]
    print(
        f"\n## peak memory of delete_by_filter (sort_field=created_at), {args.records:,} records "
        "(tracemalloc)"
    )
    print(f"{'matches':>8} {'peak MiB':>9} {'above empty':>12}")
    tracemalloc.start()
    empty = None
    for matching in counts:
        records = write_records(args.records, matching)
        with local_server(records, quota=None, latency_ms=0, extra=FIELDS) as server:
            hook = hook_for(server.url)
            hook.ping()  # imports and session made before measuring
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            result = hook.delete_by_filter(
                index_name=f"{COLLECTION}_index",
                collection_name=COLLECTION,
                filter=FILTER,
                sort_field="created_at",
                settle=2,
                poke_interval=0.2,
            )
            _, peak = tracemalloc.get_traced_memory()
            hook.close()
        assert result.ids_deleted == matching and result.remaining == 0, result
        extra = (peak - before) / 2**20
        empty = extra if empty is None else empty
        print(f"{matching:>8} {extra:>9.1f} {extra - empty:>12.1f}", flush=True)
    tracemalloc.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("throughput", "memory"))
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--matching", type=int, default=100_000)
    parser.add_argument("--quota", type=float, default=1500)
    parser.add_argument("--index-lag", type=float, default=3.0)
    parser.add_argument("--latency-ms", type=float, default=0)
    args = parser.parse_args(argv)
    (throughput if args.what == "throughput" else memory)(args)


if __name__ == "__main__":
    sys.exit(main())
