"""Peak memory of deleting a million ids, against the size of the input list (tracemalloc).

    .venv/bin/python bench/memory.py             # 1 000 000 ids
    .venv/bin/python bench/memory.py --ids 200000

Three measurements, each from a fresh tracemalloc peak, the ids already in memory (as
an XCom value is) and not counted:

- the id pipeline alone: ``normalize_ids`` then every batch of ``batched`` consumed;
- ``VikingDBHook.delete`` end to end (validation, batching, bodies, signing, limiter,
  bookkeeping, 8 workers) with only the network replaced by an instant 200 answer;
- what the operator does: ``normalize_ids`` in ``execute``, then ``hook.delete``.

"input list" is ``sys.getsizeof`` of the list of ids: its pointers, 8 bytes per id.
"""

from __future__ import annotations

import argparse
import json
import sys
import tracemalloc

from delete_client import use_connection


def make_ids(count: int) -> list[str]:
    return [f"doc-{n:09d}" for n in range(count)]


def measure(label: str, run, input_size: int) -> tuple[str, float]:
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()
    run()
    _, peak = tracemalloc.get_traced_memory()
    extra = peak - before
    print(f"{label:<58} {extra / 2**20:>9.1f} MiB {extra / input_size:>7.2f}x")
    return label, extra / input_size


def fake_hook():
    """A hook whose transport answers 200 at once: everything but the network runs."""
    use_connection("http://127.0.0.1:9", "AKBENCH", "SK-bench-memory")
    import requests

    from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook

    answer = json.dumps({"code": "Success", "message": "", "request_id": "r", "result": None}).encode()

    def send(method, url, data=None, headers=None, timeout=None):
        response = requests.Response()
        response.status_code = 200
        response._content = answer
        return response

    hook = VikingDBHook()
    hook.session.request = send
    hook.ping()  # imports, session and signer ready before measuring
    return hook


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ids", type=int, default=1_000_000)
    args = parser.parse_args(argv)

    from airflow_provider_vikingdb.ids import batched, normalize_ids

    hook = fake_hook()
    ids = make_ids(args.ids)
    input_size = sys.getsizeof(ids)
    print(f"\n## peak memory, {args.ids:,} ids (input list {input_size / 2**20:.1f} MiB; tracemalloc)")
    print(f"{'':<58} {'peak':>13} {'/ input':>8}")
    tracemalloc.start()

    def pipeline() -> None:
        for _batch in batched(normalize_ids(ids), 100):
            pass

    def hook_delete() -> None:
        hook.delete(ids, collection_name="bench")

    def operator_path() -> None:
        hook.delete(normalize_ids(ids), collection_name="bench")

    measure("normalize_ids -> batched (the id pipeline)", pipeline, input_size)
    measure("VikingDBHook.delete (network stubbed)", hook_delete, input_size)
    measure("operator: normalize_ids, then VikingDBHook.delete", operator_path, input_size)
    tracemalloc.stop()


if __name__ == "__main__":
    main()
