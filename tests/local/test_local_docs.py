"""Every code block of docs/local-server.md, run as written.

- ``python`` blocks without a test function are scripts: executed as they stand.
- ``python`` blocks that define ``test_*`` functions are tests: each function is called with the
  real fixtures it names (the provider's pytest plugin), as pytest would.
- The ``dag.test()`` recipe (a ``conftest.py`` block and its test) runs as its own pytest
  session in a temporary project, with a ``dags/my_cleanup.py`` as the page describes it.
- ``bash`` blocks: every ``vikingdb-local`` / ``python -m airflow_provider_vikingdb.local`` /
  ``make serve SERVE_ARGS=...`` command is parsed by the real parser and turned into a server
  (specs checked, ``--load`` file read: the page's ``jsonl`` block); ``export`` lines must hold
  the JSON the server's ``connection_json()`` gives for that port and the ``--sk`` the page starts
  it with.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_vikingdb.local import LocalVikingDB
from airflow_provider_vikingdb.local.__main__ import build_parser, server_from_args

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "local-server.md"
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)


def blocks(language: str) -> list[tuple[int, str]]:
    """(line number, code) of every fenced block in ``language``."""
    text = DOC.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start()) + 1, match.group(2))
        for match in _FENCE.finditer(text)
        if match.group(1) == language
    ]


PYTHON = blocks("python")
RECIPE = [block for block in PYTHON if block[1].startswith("# conftest.py") or "DagBag" in block[1]]
TESTS = [block for block in PYTHON if "def test_" in block[1] and block not in RECIPE]
SCRIPTS = [block for block in PYTHON if block not in RECIPE and block not in TESTS]


def run(code: str, line: int, namespace: dict) -> None:
    exec(compile(code, f"{DOC}:{line}", "exec"), namespace)


def test_the_page_has_the_blocks_this_test_expects() -> None:
    assert len(SCRIPTS) >= 5 and len(TESTS) >= 2 and len(RECIPE) == 2
    assert blocks("bash") and blocks("jsonl")


@pytest.mark.parametrize(("line", "code"), SCRIPTS, ids=[f"line{line}" for line, _ in SCRIPTS])
def test_script_block_runs(line: int, code: str) -> None:
    saved = dict(os.environ)  # a block may point AIRFLOW_CONN_VIKINGDB_DEFAULT at its server
    try:
        run(code, line, {"__name__": "__docs__"})
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.parametrize(("line", "code"), TESTS, ids=[f"line{line}" for line, _ in TESTS])
def test_test_block_passes(line: int, code: str, request: pytest.FixtureRequest) -> None:
    namespace: dict = {"__name__": "__docs__"}
    run(code, line, namespace)
    tests = [value for name, value in namespace.items() if name.startswith("test_") and callable(value)]
    assert tests
    for test in tests:
        fixtures = {name: request.getfixturevalue(name) for name in inspect.signature(test).parameters}
        test(**fixtures)


def commands(block: str) -> list[list[str]]:
    """The server's arguments of each command line of a bash block."""
    found = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words[:2] == ["make", "serve"]:
            settings = dict(word.split("=", 1) for word in words[2:])
            found.append(shlex.split(settings.get("SERVE_ARGS", "")))
        elif words[:1] == ["vikingdb-local"]:
            found.append(words[1:])
        elif words[:3] == ["python", "-m", "airflow_provider_vikingdb.local"]:
            found.append(words[3:])
        else:
            raise AssertionError(f"a command this test does not know: {line!r}")
    return found


def test_shell_commands_parse_and_make_a_server(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    ((_, records),) = blocks("jsonl")
    (tmp_path / "documents.jsonl").write_text(records, encoding="utf-8")
    assert "vikingdb-local $(SERVE_ARGS)" in (ROOT / "Makefile").read_text()
    # The connection shown signs with the secret key a command of the page gives (the default
    # "SK" is too short for Airflow to mask, and it warns).
    (page_sk,) = {
        build_parser().parse_args(args).sk
        for _, block in blocks("bash")
        if not block.startswith("export ")
        for args in commands(block)
        if "--sk" in args
    }
    checked = 0
    for _, block in blocks("bash"):
        if block.startswith("export "):
            ((assignment,),) = [shlex.split(block)[1:]]
            name, value = assignment.split("=", 1)
            assert name == "AIRFLOW_CONN_VIKINGDB_DEFAULT"
            assert json.loads(value) == json.loads(LocalVikingDB(port=8765, sk=page_sk).connection_json())
            checked += 1
            continue
        for args in commands(block):
            if "--help" in args:
                with pytest.raises(SystemExit) as caught:
                    build_parser().parse_args(args)
                assert caught.value.code == 0
            else:
                server = server_from_args(build_parser().parse_args(args))
                if "--load" in args:
                    assert set(server.records("documents")) == {"d1", "d2"}
                if "--field" in args:
                    assert server.fields("docs")["created_at"] == "int64"
                if "docs:tags:list<string>" in args:
                    assert server.fields("docs")["tags"] == "list<string>"
                if "--del-all-index-lag" in args:
                    assert (server.index_lag, server.del_all_index_lag) == (20, 300)
            checked += 1
    assert checked == 8


MY_CLEANUP = """
from airflow.sdk import dag, task

from airflow_provider_vikingdb.operators.vikingdb import VikingDBDeleteOperator


@dag(schedule=None, catchup=False)
def my_cleanup():
    @task
    def find() -> list[str]:
        return ["a", "b"]

    VikingDBDeleteOperator(task_id="delete", collection_name="test_coll", ids=find())


my_cleanup()
"""


@pytest.mark.e2e
def test_the_dag_test_recipe(tmp_path) -> None:
    conftest, test = (code for _, code in RECIPE)
    (tmp_path / "conftest.py").write_text(conftest, encoding="utf-8")
    (tmp_path / "test_my_cleanup.py").write_text(test, encoding="utf-8")
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "my_cleanup.py").write_text(MY_CLEANUP, encoding="utf-8")
    # the DB migrated for the Airflow running this test (.airflow, or .airflow-lower for test-lower)
    migrated = Path(os.environ.get("AIRFLOW_HOME", ROOT / ".airflow")) / "airflow.db"
    if migrated.exists():  # spare the recipe's `airflow db migrate` (a minute); it runs it when missing
        (tmp_path / ".airflow").mkdir()
        shutil.copy(migrated, tmp_path / ".airflow" / "airflow.db")
    env = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_my_cleanup.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 passed" in result.stdout
