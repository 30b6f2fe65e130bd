"""Pins for `make test-lower`: every runtime dependency at exactly its declared lower bound.

    lower_bounds.py constraints [--frozen FROZEN] [--floor REQ ...]  what pip installs with (-c)
    lower_bounds.py freeze [--floor REQ ...] < pip-freeze-output      writes FROZEN's text
    lower_bounds.py check [--floor REQ ...]                           installed == pins, or exit 1

The pins come from [project].dependencies in pyproject.toml (each must have a `>=`). A --floor
(e.g. `httpx>=0.27`) adds a package the code uses but pyproject.toml does not declare; once
pyproject.toml declares it, its own bound wins.

Airflow's own constraints files (what it was released and tested with) are served from a host this
project's machines cannot reach, so FROZEN stands in for them: the rest of the environment frozen
from a lower-bound venv in which the whole suite passed. The lower-bound pins always override it.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*([^;]*?)\s*(;.*)?$")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lower_bound(requirement: str) -> tuple[str, str, str]:
    """`name[extra]>=1.2,<2; marker` -> (normalized name, "1.2", "; marker")."""
    match = REQUIREMENT.match(requirement)
    if not match:
        raise SystemExit(f"lower_bounds: cannot read the requirement {requirement!r}")
    name, _extras, specifiers, marker = match.groups()
    floors = [s.strip()[2:].strip() for s in specifiers.split(",") if s.strip().startswith(">=")]
    if len(floors) != 1:
        raise SystemExit(
            f"lower_bounds: {requirement!r} in pyproject.toml needs exactly one '>=' lower bound "
            "for make test-lower to pin"
        )
    return normalize(name), floors[0], f"; {marker[1:].strip()}" if marker else ""


def project_table() -> dict:
    if sys.version_info < (3, 11):
        raise SystemExit("lower_bounds: needs Python 3.11+ (tomllib); set PYTHON=python3.11 or newer")
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pins(floors: list[str]) -> dict[str, str]:
    """Normalized name -> `name==version[; marker]`, for the runtime dependencies and the floors."""
    result = {}
    for requirement in project_table()["dependencies"]:
        name, version, marker = lower_bound(requirement)
        result[name] = f"{name}=={version}{marker}"
    for requirement in floors:
        name, version, marker = lower_bound(requirement)
        result.setdefault(name, f"{name}=={version}{marker}")
    return result


def requirement_name(line: str) -> str | None:
    """The normalized name a `pip freeze` / constraints line is about (None for comments)."""
    line = line.split("#", 1)[0].strip()
    if not line or line.startswith("-"):
        return None
    match = REQUIREMENT.match(line.split("@", 1)[0])
    return normalize(match.group(1)) if match else None


def dev_names() -> set[str]:
    """Packages the dev extra names itself: they follow pyproject.toml's ranges, not FROZEN."""
    return {requirement_name(r) for r in project_table()["optional-dependencies"]["dev"]} - {None}


def constraints(frozen: Path | None, floors: list[str]) -> str:
    pinned = pins(floors)
    lines = ["# make test-lower: the runtime dependencies at their lower bounds", *pinned.values()]
    if frozen is not None:
        lines.append(f"# the rest, from {frozen}")
        for line in frozen.read_text().splitlines():
            name = requirement_name(line)
            if name and name not in pinned:
                lines.append(line.strip())
    return "\n".join(lines) + "\n"


def freeze(frozen_text: str, floors: list[str]) -> str:
    skip = set(pins(floors)) | dev_names() | {normalize(project_table()["name"])}
    kept = sorted(
        (line.strip() for line in frozen_text.splitlines() if requirement_name(line) not in skip | {None}),
        key=lambda line: requirement_name(line) or "",
    )
    python = f"{sys.version_info[0]}.{sys.version_info[1]}"
    header = [
        f"# Python {python}: the environment `make test-lower` passed in, less the pinned lower bounds,",
        "# the dev tools and the project itself. Written by `make lower-constraints`; do not edit.",
    ]
    return "\n".join(header + kept) + "\n"


def same_release(a: str, b: str) -> bool:
    """2.32 and 2.32.0 are the same version (PEP 440 pads releases with zeros)."""
    return re.sub(r"(\.0+)+$", "", a) == re.sub(r"(\.0+)+$", "", b)


def check(floors: list[str]) -> int:
    wrong = []
    for name, pin in pins(floors).items():
        wanted = pin.split("==", 1)[1].split(";", 1)[0].strip()
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        print(f"  {name:<20} {installed:<14} (lower bound {wanted})")
        if not same_release(installed, wanted):
            wrong.append(name)
    if wrong:
        print(f"lower_bounds: not at the lower bound: {', '.join(wrong)}", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("constraints", "freeze", "check"):
        each = sub.add_parser(command)
        each.add_argument("--floor", action="append", default=[], help="e.g. 'httpx>=0.27'")
        if command == "constraints":
            each.add_argument("--frozen", type=Path, help="the rest of the environment, pinned")
    args = parser.parse_args()
    if args.command == "constraints":
        if args.frozen is not None and not args.frozen.exists():
            raise SystemExit(
                f"lower_bounds: no {args.frozen} for this Python: `make lower-constraints` writes it"
            )
        sys.stdout.write(constraints(args.frozen, args.floor))
        return 0
    if args.command == "freeze":
        sys.stdout.write(freeze(sys.stdin.read(), args.floor))
        return 0
    return check(args.floor)


if __name__ == "__main__":
    sys.exit(main())
