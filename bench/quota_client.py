"""One of the processes of ``bench/shared_quota.py``: deletes its own ids through the hook.

Sets up ``VikingDBHook`` (connection from the environment, one ping), prints ``ready``,
waits for a line on stdin (so that every process starts at once), then runs
``hook.delete(ids, collection_name=...)`` with every default (``--rows-per-second``: the hook's
fixed cap) and prints one JSON line:
wall-clock start and end, what the hook reported, and the wall-clock time of every
answer to a delete (accepted or throttled), read off the process's shared limiter.

    .venv/bin/python bench/quota_client.py --url http://127.0.0.1:8765 --first 0 --ids 5000

The ids are ``id_0000000``... as ``bench/delete_client.py`` makes them, from ``--first`` on.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from delete_client import use_connection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--first", type=int, required=True, help="number of the first id")
    parser.add_argument("--ids", type=int, required=True, help="how many ids to delete")
    parser.add_argument("--collection", default="bench")
    parser.add_argument("--rows-per-second", type=float, help="the hook's fixed cap (default: none, adapt)")
    args = parser.parse_args()
    ids = [f"id_{n:07d}" for n in range(args.first, args.first + args.ids)]

    use_connection(args.url)
    from airflow_provider_vikingdb.exceptions import VikingDBError
    from airflow_provider_vikingdb.hooks.vikingdb import VikingDBBatchError, VikingDBHook
    from airflow_provider_vikingdb.ratelimit import limiter_for

    hook = VikingDBHook(rows_per_second=args.rows_per_second)
    hook.ping()
    # The limiter the hook will use for this collection (one per collection per process):
    # wrapped on this instance to timestamp every answer. Nothing else is changed.
    limiter = limiter_for(hook.config.base_url, args.collection, hook.rows_per_second)
    accepted: list[float] = []
    throttled: list[float] = []
    events: list[tuple[float, float, str]] = []  # congestion events: time, rate reached, mode
    on_success, on_throttle = limiter.on_success, limiter.on_throttle

    def success(rows: int) -> None:
        accepted.append(time.time())
        on_success(rows)

    def throttle(ticket: float, rows: int = 0) -> bool:
        throttled.append(time.time())
        new = on_throttle(ticket, rows)
        if new:
            events.append((round(time.time(), 4), round(limiter.quota or 0.0), limiter.mode))
        return new

    limiter.on_success, limiter.on_throttle = success, throttle

    print("ready", flush=True)
    sys.stdin.readline()
    failed = 0
    start = time.time()
    try:
        result = hook.delete(ids, collection_name=args.collection)
        done = result.ids_done
    except VikingDBBatchError as exc:
        failed = len(exc.failed_batches)
        done = len(exc.done_ids)
    except VikingDBError:
        failed, done = -1, 0
    end = time.time()
    hook.close()
    report = {
        "ids": len(ids),
        "done": done,
        "failed": failed,
        "start": start,
        "end": end,
        "accepted": [round(t, 4) for t in accepted],
        "throttled": [round(t, 4) for t in throttled],
        "events": events,
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    sys.exit(main())
