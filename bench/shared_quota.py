"""Several processes deleting from one collection under one quota: fairness and freed quota.

    .venv/bin/python bench/shared_quota.py                       # every case, 5 runs each
    .venv/bin/python bench/shared_quota.py --cases 2x --runs 1   # one case, once
    .venv/bin/python bench/shared_quota.py --fair-cap --cases 2x,4x   # capped at quota / N
    .venv/bin/python bench/shared_quota.py --quota-burst 0.2 --cases alone,2x   # a smaller bucket

Each process (``bench/quota_client.py``, a fresh interpreter) deletes its own ids with
``VikingDBHook().delete(ids, collection_name=...)`` and every default, against one
``vikingdb-local --quota 1500 --latency-ms 30`` process holding all of them (with
``--fair-cap``, each sets ``rows_per_second`` to the quota / the number of processes, as a
user who knows that number can; with ``--rows-per-second R``, each sets R). The
processes share nothing but the server: each learns the quota on its own. They set up
first, then are all released at once.

Cases (ids per process): ``2x`` = 2 x 30 000 and ``4x`` = 4 x 15 000 (60 000 in all, as
in bench/throughput.py's quota run, so that the figures compare), ``staggered`` = 20 000
and 5 000 (the second stops early: the first should take up the quota it frees). Asked for
by name, ``late`` = 60 000 and 15 000 released 10 s later (a rollback started during a
retention delete): how long the newcomer takes to get 80 % of its fair share; ``3x``, ``6x``,
``8x``, ``16x`` and ``24x`` = about 60 000 split evenly (how the 429s grow with the number of
processes; 16 is Airflow's default ``max_active_tasks`` of a DAG); ``alone`` =
one process of 60 000 (bench/throughput.py's hook run, with this bench's columns).

``--quota-burst S`` sizes the server's bucket (S seconds of quota, default 1): the service's
is not documented, and docs/performance.md shows how the limiter fares with a smaller one.

Columns, per run, then the worst and the median of the runs:
- combined: the quota-limited time ((all ids - burst) / quota, the burst being the
  ``--quota-burst`` seconds of quota the server's bucket holds at start) / the time from the
  first start to the last end;
- share of fair: a process's ids / what a fair share of the quota gives over its life
  (the quota divided among the processes running at each moment), lowest of the run;
- throttled: 429 answers / all delete answers, from the server's log (and, in the summary,
  the same once each process is past its first second, the start, where the bucket's
  burst runs out: about one 429 each, as many as the process has requests in flight);
- pickup: once the other process stopped, seconds until the survivor's accepted rows
  over the last second first reach 90 % of the quota (end of that one-second window); in the
  staggered summary, also the survivor's rows over the 4 s after the other stopped, as a share
  of the quota (a survivor that spent the bucket's banked burst and stayed at its old share
  would reach 90 % for one second, not over four);
- ids left: ids still in the collection afterwards (fetch_in_collection); must be 0.

Per-run details (each process's start, end, 429s, its 429s in its first second: the
start, and its first congestion events with the share each took) go to stderr; ``--dump FILE``
appends every run's raw reports (each answer's time) as JSON lines.

A benchmark, not a test: read the tables. The machine's other load moves the figures.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _server import count_left, local_server, write_records
from delete_client import make_ids

HERE = Path(__file__).resolve().parent
CASES = {
    "2x": [30_000, 30_000],
    "3x": [20_000] * 3,
    "4x": [15_000] * 4,
    "6x": [10_000] * 6,
    "8x": [7_500] * 8,
    "16x": [3_700] * 16,
    "24x": [2_500] * 24,
    "staggered": [20_000, 5_000],
    "late": [60_000, 15_000],
    "alone": [60_000],
}
#: seconds after the first release that each process is released (the others: together)
DELAYS = {"late": [0.0, 10.0]}
#: the default cases: the issue's; ``late`` is asked for by name
DEFAULT_CASES = ["2x", "4x", "staggered"]


def run_once(
    sizes: list[int],
    quota: float,
    latency_ms: float,
    delays: list[float] | None = None,
    rows_per_second: float | None = None,
    quota_burst: float = 1.0,
) -> dict:
    ids = make_ids(sum(sizes))
    records = write_records(ids)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    # Output to files, not pipes: a client whose pipe filled up (the hook logs every 429)
    # would stop sending while another is being read.
    workdir = tempfile.TemporaryDirectory()
    outputs = [os.path.join(workdir.name, f"client{n}.out") for n in range(len(sizes))]
    try:
        with local_server(records, quota=quota, latency_ms=latency_ms, quota_burst=quota_burst) as server:
            clients, first = [], 0
            for size, output in zip(sizes, outputs, strict=True):
                command = [sys.executable, str(HERE / "quota_client.py"), "--url", server.url]
                command += ["--first", str(first), "--ids", str(size)]
                if rows_per_second is not None:
                    command += ["--rows-per-second", str(rows_per_second)]
                with open(output, "a") as out:  # appended to: the reads below do not move it
                    client = subprocess.Popen(
                        command, stdin=subprocess.PIPE, stdout=out, stderr=out, env=env, text=True
                    )
                clients.append(client)
                first += size
            try:
                deadline = time.monotonic() + 300
                for client, output in zip(clients, outputs, strict=True):
                    while not _lines(output, "ready"):
                        if client.poll() is not None or time.monotonic() > deadline:
                            raise SystemExit(f"client did not start:\n{_tail(output)}")
                        time.sleep(0.05)
                released = time.monotonic()
                for client, delay in zip(clients, delays or [0.0] * len(clients), strict=True):
                    # released together (one write each, no setup in between), or at its delay
                    time.sleep(max(0.0, released + delay - time.monotonic()))
                    client.stdin.write("go\n")
                    client.stdin.flush()
                for client in clients:
                    client.wait(timeout=1800)
            finally:
                for client in clients:
                    if client.poll() is None:
                        client.kill()
                        client.wait()
            reports = []
            for client, output in zip(clients, outputs, strict=True):
                done = _lines(output, "{")
                if client.returncode != 0 or not done:
                    raise SystemExit(f"client failed:\n{_tail(output)}")
                reports.append(json.loads(done[-1]))
            left = count_left(server.url, ids)
            answers = server.delete_answers()
    finally:
        os.unlink(records)
        workdir.cleanup()
    attempts, throttled = sum(answers.values()), answers.get("429", 0)
    return {"reports": reports, "left": left, "attempts": attempts, "throttled": throttled}


def _lines(path: str, start: str) -> list[str]:
    with open(path) as output:
        return [line for line in output.read().splitlines() if line.startswith(start)]


def _tail(path: str) -> str:
    with open(path) as output:
        return output.read()[-3000:]


def fair_shares(reports: list[dict], quota: float) -> list[float]:
    """Each process's ids over what an equal split of the quota among those running gives it."""
    edges = sorted({r["start"] for r in reports} | {r["end"] for r in reports})
    shares = []
    for r in reports:
        fair = 0.0
        for a, b in pairwise(edges):
            if r["start"] <= a and b <= r["end"]:
                running = sum(1 for o in reports if o["start"] <= a and b <= o["end"])
                fair += (b - a) * quota / running
        shares.append(r["done"] / fair if fair else float("nan"))
    return shares


def _survivor(reports: list[dict]) -> tuple[dict, float] | None:
    """The process that ended last, and when the one before it ended (None for one process)."""
    if len(reports) < 2:
        return None
    ordered = sorted(reports, key=lambda r: r["end"])
    return ordered[-1], ordered[-2]["end"]


def pickup(reports: list[dict], quota: float, window: float = 1.0) -> float | None:
    """Seconds from the next-to-last process's end until the last one accepts 90 % of the quota."""
    found = _survivor(reports)
    if found is None:
        return None
    survivor, freed_at = found
    return _seconds_to_reach(survivor, freed_at, 0.9 * quota, window)


def held(reports: list[dict], quota: float, span: float = 4.0) -> float | None:
    """The survivor's accepted rows over the ``span`` seconds after the next-to-last process's end
    (or until its own end, if sooner), as a share of the quota: a pickup that only spends the
    burst the bucket banked, then stays at the old share, reaches 90 % for a second but not this."""
    found = _survivor(reports)
    if found is None:
        return None
    survivor, freed_at = found
    until = min(freed_at + span, survivor["end"])
    if until <= freed_at:
        return None
    taken = 100 * sum(1 for t in survivor["accepted"] if freed_at < t <= until)
    return taken / (quota * (until - freed_at))


def catch_up(reports: list[dict], quota: float, window: float = 2.0) -> float | None:
    """Seconds from the last process's start until it accepts 80 % of a fair share (over 2 s)."""
    late = max(reports, key=lambda r: r["start"])
    running = sum(1 for r in reports if r["start"] <= late["start"] < r["end"])
    return _seconds_to_reach(late, late["start"], 0.8 * quota / running, window)


def _seconds_to_reach(report: dict, since: float, rate: float, window: float) -> float | None:
    """Seconds from ``since`` until the process's accepted rows over the last ``window`` first reach
    ``rate`` rows/s (the end of that window), or None."""
    times = report["accepted"]  # one batch of 100 rows each
    for k in range(bisect.bisect_left(times, since), len(times)):
        if 100 * (k - bisect.bisect_right(times, times[k] - window) + 1) >= rate * window:
            return times[k] - since
    return None


def summarize(run: dict, quota: float, burst: float = 1.0) -> dict:
    reports = run["reports"]
    total = sum(r["ids"] for r in reports)
    t0 = min(r["start"] for r in reports)
    wall = max(r["end"] for r in reports) - t0
    return {
        "seconds": wall,
        "combined": max(total - quota * burst, 0) / quota / wall,
        "shares": fair_shares(reports, quota),
        "throttled": run["throttled"] / max(run["attempts"], 1),
        "throttled_later": _throttled_after_first_second(reports),
        "pickup": pickup(reports, quota),
        "held": held(reports, quota),
        "catch_up": catch_up(reports, quota),
        "left": run["left"],
        "failed": sum(max(r["failed"], 0) for r in reports) + sum(1 for r in reports if r["failed"] < 0),
        # per process, from the first start: when it started and ended, its 429s (in all and in
        # its first second: the start), its first congestion events
        "starts": [round(r["start"] - t0, 3) for r in reports],
        "ends": [round(r["end"] - t0, 2) for r in reports],
        "429s": [len(r["throttled"]) for r in reports],
        "429s_first_second": [sum(1 for t in r["throttled"] if t < r["start"] + 1) for r in reports],
        "first_events": [
            [(round(t - t0, 2), rate, mode) for t, rate, mode in r["events"][:4]] for r in reports
        ],
    }


def _throttled_after_first_second(reports: list[dict]) -> float:
    """The 429 share once each process is past its first second (its start)."""
    throttled = answers = 0
    for r in reports:
        edge = r["start"] + 1.0
        late_429s = sum(1 for t in r["throttled"] if t >= edge)
        throttled += late_429s
        answers += late_429s + sum(1 for t in r["accepted"] if t >= edge)
    return throttled / max(answers, 1)


def worst_and_median(values: list[float], worst=min) -> str:
    return f"{worst(values):.3g} / {statistics.median(values):.3g}"


def table(name: str, sizes: list[int], runs: list[dict]) -> str:
    head = f"{'run':<7} {'seconds':>7} {'combined':>9} {'share of fair (each)':>26}"
    head += f" {'throttled':>9} {'pickup s':>8} {'failed':>6} {'ids left':>8}"
    lines = [f"\n## {name}: {len(sizes)} processes, ids {' + '.join(map(str, sizes))}", head, "-" * len(head)]
    for n, s in enumerate(runs, 1):
        each = " ".join(f"{100 * x:.0f}%" for x in s["shares"])
        pick = "-" if s["pickup"] is None else f"{s['pickup']:.2f}"
        row = f"{n:<7} {s['seconds']:>7.1f} {100 * s['combined']:>8.1f}% {each:>26}"
        row += f" {100 * s['throttled']:>8.1f}% {pick:>8} {s['failed']:>6} {s['left']:>8}"
        lines.append(row)
    combined = [100 * s["combined"] for s in runs]
    lowest = [100 * min(s["shares"]) for s in runs]
    throttled = [100 * s["throttled"] for s in runs]
    lines.append(f"worst / median of {len(runs)}: combined {worst_and_median(combined)} %,")
    lines.append(f"  lowest share of fair {worst_and_median(lowest)} %,")
    later = [100 * s["throttled_later"] for s in runs]
    lines.append(
        f"  throttled {worst_and_median(throttled, max)} % (after each process's first second:"
        f" {worst_and_median(later, max)} %),"
    )
    picks = [s["pickup"] for s in runs]
    if name == "staggered":
        known = [p for p in picks if p is not None]
        kept = [100 * s["held"] for s in runs if s["held"] is not None]
        if kept:
            lines.append(f"  the survivor's next 4 s at {worst_and_median(kept)} % of the quota,")
        if len(known) == len(picks):
            lines.append(f"  pickup {worst_and_median(known, max)} s,")
        else:
            missed = len(picks) - len(known)
            lines.append(f"  pickup: 90 % of the quota not reached in {missed} of {len(picks)} runs,")
    if name == "late":
        ups = [s["catch_up"] for s in runs]
        known = [u for u in ups if u is not None]
        lines.append(
            f"  the late one at 80 % of its fair share {worst_and_median(known, max)} s after it started"
            + ("," if len(known) == len(ups) else f" (not reached in {len(ups) - len(known)} runs),")
        )
    failed, left = sum(s["failed"] for s in runs), sum(s["left"] for s in runs)
    lines.append(f"  failed batches {failed}, ids left {left} in all")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cases",
        default=",".join(DEFAULT_CASES),
        help=f"comma-separated, of {', '.join(CASES)} (default {','.join(DEFAULT_CASES)})",
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per case (default 5)")
    parser.add_argument("--quota", type=float, default=1500.0, help="rows/s (default 1500)")
    parser.add_argument("--latency-ms", type=float, default=30.0, help="server latency (default 30)")
    parser.add_argument(
        "--fair-cap",
        action="store_true",
        help="give each process rows_per_second = quota / the number of processes (what a user who"
        " knows that number can set) instead of letting it adapt",
    )
    parser.add_argument(
        "--rows-per-second", type=float, help="give each process this rows_per_second instead (a fixed cap)"
    )
    parser.add_argument(
        "--quota-burst",
        type=float,
        default=1.0,
        help="seconds of quota the server's bucket holds (default 1)",
    )
    parser.add_argument("--dump", help="append each run's raw reports to this file (a JSON line per run)")
    args = parser.parse_args(argv)
    if args.fair_cap and args.rows_per_second is not None:
        parser.error("--fair-cap and --rows-per-second both set the cap: give one")
    capped = ", each process capped at rows_per_second = quota / N" if args.fair_cap else ""
    if args.rows_per_second is not None:
        capped = f", each process capped at rows_per_second = {args.rows_per_second:g}"
    head = f"shared quota: {args.quota:g} rows/s, a bucket of {args.quota_burst:g} s, latency"
    head += f" {args.latency_ms:g} ms, {args.runs} runs a case"
    print(f"\n# {head}{capped}")
    for name in args.cases.split(","):
        sizes = CASES[name]
        runs = []
        for n in range(args.runs):
            cap = args.quota / len(sizes) if args.fair_cap else args.rows_per_second
            run = run_once(sizes, args.quota, args.latency_ms, DELAYS.get(name), cap, args.quota_burst)
            if args.dump:
                with open(args.dump, "a") as dump:
                    dump.write(json.dumps({"case": name, **run}) + "\n")
            runs.append(summarize(run, args.quota, args.quota_burst))
            print(f"  {name} run {n + 1}: {json.dumps(runs[-1])}", file=sys.stderr, flush=True)
        print(table(name, sizes, runs), flush=True)


if __name__ == "__main__":
    main()
