"""Every benchmark, one after the other (``make bench``): about eighteen minutes.

1. quota run: 60 000 ids, ``vikingdb-local --quota 1500 --latency-ms 30`` (bench/throughput.py)
2. no-quota run: the same without a quota
3. upsert at the quota: 30 000 rows, list and stream (bench/upsert_throughput.py)
4. shared quota: 2 and 4 processes deleting from one collection, and one stopping early
   (bench/shared_quota.py, 5 runs of each case: about ten minutes), and the same cases
   simulated for rules that probe less in a crowd (bench/shared_quota_sim.py); then one
   process against a bucket of 0.2 s of quota, adapting and capped at 98 % of the quota
5. import cost of the operator module (bench/import_cost.py)
6. peak memory of deleting 1 000 000 ids (bench/memory.py)

Benchmarks, not tests: nothing here passes or fails; read the tables. The machine's
other load moves every figure; compare the rows of one table, not runs with each other.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z \[")

STEPS = [
    ["throughput.py", "--quota", "1500", "--latency-ms", "30", "--ids", "60000"],
    ["throughput.py", "--no-quota", "--latency-ms", "30", "--ids", "60000"],
    ["upsert_throughput.py", "--quota", "1500", "--latency-ms", "30", "--rows", "30000"],
    ["shared_quota.py", "--runs", "5"],
    ["shared_quota_sim.py"],
    ["shared_quota.py", "--quota-burst", "0.2", "--cases", "alone", "--runs", "1"],
    [
        "shared_quota.py",
        "--quota-burst",
        "0.2",
        "--cases",
        "alone",
        "--runs",
        "1",
        "--rows-per-second",
        "1470",
    ],
    ["import_cost.py", "-n", "10"],
    ["memory.py", "--ids", "1000000"],
]


def main() -> int:
    failed = 0
    for step in STEPS:
        command = [sys.executable, str(HERE / step[0]), *step[1:]]
        print(f"\n$ {' '.join(['python', 'bench/' + step[0], *step[1:]])}", flush=True)
        # Tables on stdout, per-run details on stderr (shown on failure); Airflow's log lines are
        # printed on stdout too, and left out.
        done = subprocess.run(command, capture_output=True, text=True)
        print("".join(line for line in done.stdout.splitlines(True) if not LOG_LINE.match(line)), end="")
        if done.returncode:
            print(done.stderr[-3000:], file=sys.stderr)
            failed = 1
    return failed


if __name__ == "__main__":
    sys.exit(main())
