"""What a DAG file pays for importing the provider, checked in a fresh interpreter.

The DAG processor imports every DAG file over and over, and DAG files import our modules: the HTTP
clients, the signer and the local test server must load only when a task runs. ruff's TID253
(pyproject.toml) bans such imports at module level, but only statements directly in the module
body: one inside a module-level ``try:``/``if``, an ``importlib.import_module`` call or a
dependency that pulls one in slips past it. This test checks what actually ends up loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = "airflow_provider_vikingdb"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE
# What no runtime module may load at import time (a name and everything under it).
HEAVY = ("requests", "volcengine", "httpx", f"{PACKAGE}.local")
# Every DAG file imports the task SDK itself; what that loads is not ours to answer for.
BASELINE = "airflow.sdk"


def runtime_modules() -> list[str]:
    """Every module of the package but the local server, found on disk (nothing is imported)."""
    names = []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        if not _is_heavy(name):
            names.append(name)
    return names


def _heavy_root(module: str) -> str | None:
    """The entry of HEAVY that module is, or is under; None when it is none of them."""
    return next((h for h in HEAVY if module == h or module.startswith(h + ".")), None)


def _is_heavy(module: str) -> bool:
    return _heavy_root(module) is not None


def _loaded_by_each_import(modules: list[str]) -> dict[str, list[str]]:
    """Import BASELINE, then each module in turn; return what each import added to sys.modules."""
    code = textwrap.dedent(
        """
        import importlib, json, sys

        added = {}
        for name in sys.argv[1:]:
            before = set(sys.modules)
            importlib.import_module(name)
            added[name] = sorted(set(sys.modules) - before)
        print(json.dumps(added))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code, BASELINE, *modules], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def test_the_discovery_finds_the_public_modules_and_skips_the_local_server():
    modules = runtime_modules()
    for public in ("hooks.vikingdb", "operators.vikingdb", "sensors.vikingdb", "triggers.vikingdb"):
        assert f"{PACKAGE}.{public}" in modules
    assert PACKAGE in modules and f"{PACKAGE}.exceptions" in modules
    assert not [m for m in modules if m.startswith(f"{PACKAGE}.local")]


def test_importing_any_runtime_module_loads_no_http_client_signer_or_local_server():
    modules = runtime_modules()
    added = _loaded_by_each_import(modules)
    assert list(added) == [BASELINE, *modules]  # every module really was imported

    # Were the task SDK to load one of these itself, the check below would prove nothing for it.
    # It does load httpx (Airflow 3.1.8 and 3.3.2 alike): for httpx, only ruff's TID253 checks.
    preloaded = [m for m in added[BASELINE] if _is_heavy(m) and _heavy_root(m) != "httpx"]
    assert preloaded == [], f"{BASELINE} itself loads {preloaded}: this test cannot see them any more"

    culprits = [
        f"importing {name} loads {', '.join(heavy)}"
        for name, new in added.items()
        if name != BASELINE and (heavy := sorted({_heavy_root(m) for m in new} - {None}))
    ]
    assert culprits == []


def test_the_check_sees_a_heavy_import():
    """The same measurement, pointed at modules that do load them, reports them."""
    added = _loaded_by_each_import([f"{PACKAGE}.local.server", "requests"])
    assert f"{PACKAGE}.local.server" in added[f"{PACKAGE}.local.server"]
    assert "requests" in added["requests"]
