"""The local server's search, count and write costs with a large index (400 000 records).

Loads N records (default 400 000) with declared fields ``created_at`` (int64),
``load_run_id`` (string) and ``score`` (float32), in shuffled order, then times, as the
median of R calls each:

- ``search/scalar`` pages of 5000 with a range filter (the retention query: oldest
  first, ``created_at`` below a cutoff that matches half the records), at offset 0 and
  deep; and one whose filter also needs a ``must`` on another field;
- ``agg`` counts: a range, a ``must``, a group-by; and a ``must_not``, which has to
  test every record: the baseline the indexed filters are compared with;
- upsert, update and delete batches of 100 while the index holds them all (index lag 0,
  so every batch also goes into the index structures).

The endpoints are called in-process (what the server spends, no HTTP), then one
search/scalar page of 5000 is timed over HTTP, signed, JSON both ways.

    .venv/bin/python bench/local_search.py            # 400 000 records
    .venv/bin/python bench/local_search.py -n 100000 -r 5
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import requests
from volcengine.auth.SignerV4 import SignerV4
from volcengine.base.Request import Request
from volcengine.Credentials import Credentials

from airflow_provider_vikingdb.local import LocalVikingDB, api, search

FIELDS = {"created_at": "int64", "load_run_id": "string", "score": "float32"}
START = 1_700_000_000
RUNS = 40
INDEX = {"collection_name": "bench", "index_name": "bench_index"}


def records(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = [
        {
            "id": f"r{n:07d}",
            "created_at": START + n * 3 + rng.randint(0, 2),  # ~unique, some ties
            "load_run_id": f"run-{n * RUNS // count:02d}",
            "score": rng.random(),
            "text": "x" * 20,
        }
        for n in range(count)
    ]
    rng.shuffle(rows)  # insertion order is not value order
    return rows


def timed(call: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median milliseconds of ``repeat`` calls, and the last call's result."""
    durations, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = call()
        durations.append((time.perf_counter() - started) * 1000)
    return statistics.median(durations), result


def report(label: str, ms: float, note: str = "") -> None:
    print(f"  {label:<58} {ms:>9.2f} ms  {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--records", type=int, default=400_000, help="records (default 400000)")
    parser.add_argument("-r", "--repeat", type=int, default=9, help="calls per figure (default 9)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    count, repeat = args.records, args.repeat
    cutoff = START + count * 3 // 2  # matches about half

    server = LocalVikingDB(collections=("bench",), fields={"bench": FIELDS}, index_lag=0)
    store = server.store
    rows = records(count, args.seed)
    started = time.perf_counter()
    server.load("bench", rows)
    load_s = time.perf_counter() - started
    print(f"{count} records loaded in {load_s:.2f} s; peak RSS {peak_rss_mb():.0f} MB")

    older = {"op": "range", "field": "created_at", "lt": cutoff}
    page = {**INDEX, "field": "created_at", "order": "asc", "limit": 5000, "output_fields": []}
    print("search/scalar, limit 5000, ids only:")
    ms, got = timed(lambda: search.search_scalar(store, {**page, "filter": older}), repeat)
    report("range created_at < cutoff, offset 0", ms, f"(matched {got['filter_matched_count']})")
    deep = count * 3 // 8  # three quarters into the matches
    ms, _ = timed(lambda: search.search_scalar(store, {**page, "filter": older, "offset": deep}), repeat)
    report(f"the same, offset {deep}", ms)
    ms, _ = timed(lambda: search.search_scalar(store, {**page, "order": "desc"}), repeat)
    report("no filter, order desc", ms)
    one_run = {"op": "must", "field": "load_run_id", "conds": ["run-07"]}
    both = {"op": "and", "conds": [older, one_run]}
    ms, got = timed(lambda: search.search_scalar(store, {**page, "filter": both}), repeat)
    report("and(range, must load_run_id)", ms, f"(matched {got['filter_matched_count']})")
    with_fields = {key: value for key, value in page.items() if key != "output_fields"} | {"filter": older}
    ms, _ = timed(lambda: search.search_scalar(store, with_fields), repeat)
    report("range, all fields returned", ms)

    print("search/random, limit 5000:")
    random_page = {**INDEX, "limit": 5000, "output_fields": []}
    ms, _ = timed(lambda: search.search_random(store, {**random_page, "filter": older}), repeat)
    report("range created_at < cutoff", ms)

    print("agg count:")
    count_body = {**INDEX, "op": "count"}
    ms, got = timed(lambda: search.agg(store, {**count_body, "filter": older}), repeat)
    range_ms = ms
    report("range created_at < cutoff", ms, f"(= {got['agg']['__TOTAL__']})")
    ms, got = timed(lambda: search.agg(store, {**count_body, "filter": one_run}), repeat)
    report("must load_run_id", ms, f"(= {got['agg']['__TOTAL__']})")
    ms, _ = timed(lambda: search.agg(store, {**count_body, "field": "load_run_id"}), repeat)
    report("group by load_run_id, no filter", ms)
    ms, _ = timed(lambda: search.agg(store, {**count_body, "field": "load_run_id", "filter": older}), repeat)
    report("group by load_run_id, range filter", ms)
    not_one = {"op": "must_not", "field": "load_run_id", "conds": ["run-07"]}
    ms, got = timed(lambda: search.agg(store, {**count_body, "filter": not_one}), repeat)
    report("must_not load_run_id (tests every record: the baseline)", ms, f"(= {got['agg']['__TOTAL__']})")
    print(f"  -> a range count costs {range_ms / ms:.4f} of a full scan")

    print("writes, batches of 100 into the large index:")
    rng = random.Random(args.seed + 1)
    fresh = iter(range(10**7))

    def new_rows() -> list[dict]:
        return [
            {"id": f"n{next(fresh):07d}", "created_at": rng.randint(START, cutoff), "load_run_id": "run-new"}
            for _ in range(100)
        ]

    ms, _ = timed(lambda: api.upsert(store, {"collection_name": "bench", "data": new_rows()}), repeat * 3)
    report("upsert 100 new records", ms)
    existing = [row["id"] for row in rows]

    def update_batch() -> None:
        ids = rng.sample(existing, 100)
        data = [{"id": i, "created_at": rng.randint(START, cutoff)} for i in ids]
        api.update(store, {"collection_name": "bench", "data": data})

    ms, _ = timed(update_batch, repeat * 3)
    report("update 100 records (created_at changes)", ms)
    doomed = iter(existing)
    ms, _ = timed(
        lambda: api.delete(store, {"collection_name": "bench", "ids": [next(doomed) for _ in range(100)]}),
        repeat * 3,
    )
    report("delete 100 records", ms)

    print("over HTTP (signed, one keep-alive session, server in this process):")
    server.start()
    try:
        session = requests.Session()
        credentials = Credentials(server.ak, server.sk, "vikingdb", server.region)
        path = "/api/vikingdb/data/search/scalar"
        body = json.dumps({**page, "filter": older})

        def over_http() -> int:
            response = session.post(server.url + path, data=body, headers=signed(path, body, credentials))
            return len(response.json()["result"]["data"])

        ms, got = timed(over_http, repeat)
        report("search/scalar page of 5000, ids only", ms, f"({got} ids)")
        body = json.dumps(with_fields | {"filter": older})
        ms, got = timed(over_http, repeat)
        report("search/scalar page of 5000, all fields", ms, f"({got} records)")
        session.close()
    finally:
        server.stop()
    print(f"peak RSS {peak_rss_mb():.0f} MB")


def signed(path: str, body: str, credentials: Credentials) -> dict[str, str]:
    request = Request()
    request.set_method("POST")
    request.set_path(path)
    request.set_headers({"Accept": "application/json", "Content-Type": "application/json"})
    request.set_body(body)
    SignerV4.sign(request, credentials)
    return dict(request.headers)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
