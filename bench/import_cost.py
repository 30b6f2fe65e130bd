"""What a DAG file pays to import the operator: median over fresh interpreters, minus airflow.sdk alone.

    .venv/bin/python bench/import_cost.py            # 10 interpreters each
    .venv/bin/python bench/import_cost.py -n 20 --detail

Each measurement is a new interpreter timing one import statement with perf_counter
(interpreter start-up excluded). The two kinds alternate, so that a noisy neighbour
hits both alike. airflow.sdk alone takes about a second and varies by tens of ms from
one interpreter to the next, so the difference of two medians is noisy; the table also
gives the median of the paired figure: in each interpreter of the second kind,
airflow.sdk is imported first and then the operator module, timed on its own.
``--detail`` lists the modules our import adds, by ``python -X importtime``.

Our package's bytecode is compiled first (as ``pip install`` does for a wheel; Airflow's
own is in site-packages): with PYTHONDONTWRITEBYTECODE set, an editable install would
otherwise recompile every module of ours in every interpreter, and airflow.sdk's not.
"""

from __future__ import annotations

import argparse
import compileall
import statistics
import subprocess
import sys
from pathlib import Path

OPERATOR = "airflow_provider_vikingdb.operators.vikingdb"
BASELINE = "airflow.sdk"
HEAVY = ("requests", "urllib3", "volcengine", "airflow_provider_vikingdb.local.server", "concurrent.futures")

TIMED = """
import sys, time
start = time.perf_counter()
import airflow.sdk
middle = time.perf_counter()
before = {{m for m in {heavy!r} if m in sys.modules}}
{statement}
end = time.perf_counter()
heavy = [m for m in {heavy!r} if m in sys.modules and m not in before]
print(end - start, end - middle, ",".join(heavy))
"""


def time_import(module: str | None) -> tuple[float, float, list[str]]:
    """(airflow.sdk then ``module``, ``module`` alone after it, heavy modules ``module`` loaded)."""
    code = TIMED.format(heavy=HEAVY, statement=f"import {module}" if module else "pass")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    total, increment, heavy = out.stdout.rstrip("\n").splitlines()[-1].split(" ", 2)
    return float(total), float(increment), [m for m in heavy.split(",") if m]


def importtime(module: str) -> dict[str, int]:
    """Self time in microseconds of each module ``import module`` loads (``-X importtime``)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"], capture_output=True, text=True
    )
    own: dict[str, int] = {}
    for line in out.stderr.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[0].split(":")[1].strip().isdigit():
            own[parts[2].strip()] = int(parts[0].split(":")[1])
    return own


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=10, help="fresh interpreters per import (default 10)")
    parser.add_argument("--detail", action="store_true", help="list what our import adds, by -X importtime")
    args = parser.parse_args(argv)
    package = Path(__file__).resolve().parents[1] / "airflow_provider_vikingdb"
    compileall.compile_dir(str(package), quiet=1)
    ours, base, paired, heavy_loaded = [], [], [], set()
    time_import(None), time_import(OPERATOR)  # warm the file system cache, write .pyc files
    for _ in range(args.n):
        base.append(time_import(None)[0])
        total, increment, heavy = time_import(OPERATOR)
        ours.append(total)
        paired.append(increment)
        heavy_loaded.update(heavy)
    median_ours, median_base = statistics.median(ours), statistics.median(base)
    print(f"\n## import cost, median of {args.n} fresh interpreters each")
    print(f"{'import':<52} {'median ms':>10} {'min ms':>8} {'max ms':>8}")
    for name, values in (
        (BASELINE, base),
        (f"{BASELINE} + {OPERATOR.rsplit('.', 2)[-2]}.vikingdb operator", ours),
        ("the operator module after airflow.sdk (paired)", paired),
    ):
        row = f"{name:<52} {1000 * statistics.median(values):>10.1f}"
        print(row + f" {1000 * min(values):>8.1f} {1000 * max(values):>8.1f}")
    print(
        f"{'difference of the first two (medians, minimums)':<52} {1000 * (median_ours - median_base):>10.1f}"
        f" {1000 * (min(ours) - min(base)):>8.1f}"
    )
    print(f"heavy modules the operator import loads: {', '.join(sorted(heavy_loaded)) or 'none'}")
    if args.detail:
        baseline = importtime(BASELINE)
        extra = {k: v for k, v in importtime(OPERATOR).items() if k not in baseline}
        print("what the operator import adds (self time, -X importtime, one run):")
        for name, micros in sorted(extra.items(), key=lambda item: -item[1])[:15]:
            print(f"  {micros / 1000:7.1f} ms  {name}")
    return {
        "ours": median_ours,
        "base": median_base,
        "extra": median_ours - median_base,
        "paired": statistics.median(paired),
    }


if __name__ == "__main__":
    main()
