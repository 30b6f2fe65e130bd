"""The command line: ``python -m airflow_provider_vikingdb.local`` and ``vikingdb-local``, as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from airflow_provider_vikingdb.local.__main__ import build_parser, read_load_file, server_from_args
from tests.local.vikingdb_signing_client import SigningClient


@contextmanager
def running(*args: str, env: dict[str, str] | None = None, command: list[str] | None = None) -> Iterator[str]:
    """Start the CLI, yield its URL from the ready line, then stop it and check it exits cleanly."""
    argv = command or [sys.executable, "-m", "airflow_provider_vikingdb.local"]
    process = subprocess.Popen(
        [*argv, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(process.stdout.readline()))
        reader.start()
        reader.join(timeout=30)
        assert line and line[0], f"no ready line; stderr: {process.stderr.read() if process.poll() else ''}"
        prefix = "vikingdb-local listening on "
        assert line[0].startswith(prefix), line[0]
        yield line[0][len(prefix) :].strip()
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, process.stderr.read()


def test_cli_serves_signed_ping_and_delete(tmp_path: Path) -> None:
    load = tmp_path / "records.jsonl"
    load.write_text(
        "\n".join(
            json.dumps(line)
            for line in [
                {"collection": "docs", "fields": {"id": "a", "text": "alpha"}},
                {"collection": "docs", "fields": {"id": "b", "text": "beta"}},
                {"collection": "nums", "fields": {"key": 7}},
            ]
        )
        + "\n"
    )
    args = ["--port", "0", "--collection", "docs", "--collection", "nums:key:int64", "--load", str(load)]
    with running(*args, "--index", "docs:extra") as url:
        assert url.startswith("http://127.0.0.1:")
        client = SigningClient(url)
        try:
            assert client.post("/api/vikingdb/Ping", method="GET").status_code == 200
            assert requests.get(url + "/api/vikingdb/Ping", timeout=5).status_code == 200
            fetched = client.fetch("docs", ["a", "b"], index="extra").json()["result"]
            assert [item["id"] for item in fetched["fetch"]] == ["a", "b"]
            assert client.delete("docs", ids=["a"]).status_code == 200
            after = client.fetch("docs", ["a", "b"]).json()["result"]
            assert after["ids_not_exist"] == ["a"]
            assert client.fetch("nums", [7]).json()["result"]["fetch"] == [{"id": 7, "fields": {}}]
            assert client.delete("test_coll", ids=["a"]).status_code == 404  # only the named collections
        finally:
            client.close()


def test_cli_credentials_from_the_environment_and_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "vikingdb-local"
    if not script.exists():
        pytest.skip("console script not installed next to this interpreter")
    load = tmp_path / "one.jsonl"
    load.write_text('{"id": "x", "n": 1}\n# comments and blank lines are skipped\n\n{"id": "y"}\n')
    env = {"VIKINGDB_LOCAL_AK": "ENV_AK", "VIKINGDB_LOCAL_SK": "ENV_SK"}
    with running(
        "--port", "0", "--collection", "only", "--load", str(load), env=env, command=[str(script)]
    ) as url:
        client = SigningClient(url, ak="ENV_AK", sk="ENV_SK")
        default_client = SigningClient(url)
        try:
            assert client.fetch("only", ["x", "y"]).json()["result"]["ids_not_exist"] == []
            assert default_client.fetch("only", ["x"]).status_code == 401
        finally:
            client.close()
            default_client.close()


def test_cli_bad_load_file_fails_with_the_line(tmp_path: Path) -> None:
    load = tmp_path / "bad.jsonl"
    load.write_text('{"id": "a"}\n')
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_vikingdb.local", "--port", "0", "--load", str(load)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "bad.jsonl:1" in result.stderr


def test_parser_defaults(monkeypatch) -> None:
    monkeypatch.delenv("VIKINGDB_LOCAL_AK", raising=False)
    monkeypatch.delenv("VIKINGDB_LOCAL_SK", raising=False)
    monkeypatch.delenv("VIKINGDB_LOCAL_API_KEY", raising=False)
    args = build_parser().parse_args([])
    assert (args.host, args.port, args.ak, args.sk, args.region) == (
        "127.0.0.1",
        8765,
        "AK",
        "SK",
        "cn-beijing",
    )
    assert (args.api_key, args.collection, args.index, args.load) == (None, None, [], None)
    assert (args.index_lag, args.quota, args.quota_burst, args.latency_ms, args.fail_rate, args.seed) == (
        0.0,
        None,
        None,
        0,
        0.0,
        None,
    )


def test_read_load_file(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"collection": "a", "fields": {"id": "1"}}\n{"collection": "b", "fields": {"id": 2}}\n')
    assert read_load_file(str(path), ["a", "b"]) == {"a": [{"id": "1"}], "b": [{"id": 2}]}
    path.write_text('{"id": "1"}\n')
    assert read_load_file(str(path), ["a"]) == {"a": [{"id": "1"}]}
    with pytest.raises(ValueError, match=r"r\.jsonl:1"):
        read_load_file(str(path), ["a", "b"])
    path.write_text("{broken\n")
    with pytest.raises(ValueError, match="not JSON"):
        read_load_file(str(path), ["a"])


def test_parser_fields_and_del_all_lag() -> None:
    args = build_parser().parse_args([])
    assert (args.field, args.del_all_index_lag) == ([], None)
    args = build_parser().parse_args(
        [
            "--field",
            "docs:created_at:int64",
            "--field",
            "docs:tags:list<string>",
            "--del-all-index-lag",
            "300",
        ]
    )
    assert args.field == ["docs:created_at:int64", "docs:tags:list<string>"]
    assert args.del_all_index_lag == 300.0


def test_parser_quota_burst_makes_the_bucket_that_size() -> None:
    server = server_from_args(build_parser().parse_args(["--quota", "1500", "--quota-burst", "0.2"]))
    assert (server.quota, server.quota_burst) == (1500, 0.2)
    collection = server.store.collections["test_coll"]
    assert collection.bucket is not None and collection.bucket.capacity == pytest.approx(300)
    with pytest.raises(ValueError, match="quota_burst must be a positive number of seconds"):
        server_from_args(build_parser().parse_args(["--quota", "1500", "--quota-burst", "0"]))
    with pytest.raises(ValueError, match="give --quota ROWS_PER_SECOND too"):
        server_from_args(build_parser().parse_args(["--quota-burst", "0.2"]))
    assert server_from_args(build_parser().parse_args([])).quota_burst == 1.0


def test_cli_bad_field_spec_fails_naming_it() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow_provider_vikingdb.local",
            "--port",
            "0",
            "--field",
            "test_coll:n:int",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "test_coll:n:int" in result.stderr and "int64" in result.stderr


def test_cli_fields_lags_and_search(tmp_path: Path) -> None:
    load = tmp_path / "docs.jsonl"
    load.write_text("".join(json.dumps({"id": f"d{n}", "created_at": n}) + "\n" for n in range(5)))
    args = [
        "--port", "0", "--collection", "docs", "--field", "docs:created_at:int64", "--load", str(load),
        "--index-lag", "0", "--del-all-index-lag", "60",
    ]  # fmt: skip
    with running(*args) as url:
        client = SigningClient(url)
        try:
            index = {"collection_name": "docs", "index_name": "docs_index"}
            found = client.post(
                "/api/vikingdb/data/search/scalar",
                {
                    **index,
                    "field": "created_at",
                    "order": "asc",
                    "filter": {"op": "range", "field": "created_at", "lt": 2},
                },
            ).json()["result"]
            assert [item["id"] for item in found["data"]] == ["d0", "d1"]
            assert client.delete("docs", del_all=True).status_code == 200
            # the collection is empty at once; the index holds everything for --del-all-index-lag
            assert client.fetch("docs", ["d0"]).json()["result"]["ids_not_exist"] == ["d0"]
            count = client.post("/api/vikingdb/data/agg", {**index, "op": "count"}).json()["result"]
            assert count["agg"] == {"__TOTAL__": 5}
        finally:
            client.close()
