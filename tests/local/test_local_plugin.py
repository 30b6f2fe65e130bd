"""The pytest plugin: its fixtures, and that loading it costs nothing heavy."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import requests


def test_vikingdb_server_fixture(vikingdb_server) -> None:
    assert vikingdb_server.running
    assert set(vikingdb_server.store.collections) == {"test_coll", "test_coll_int"}
    assert vikingdb_server.store.collections["test_coll"].key_type == "string"
    assert vikingdb_server.store.collections["test_coll_int"].key_type == "int64"
    assert requests.get(vikingdb_server.url + "/api/vikingdb/Ping", timeout=5).status_code == 200


def test_vikingdb_server_factory_fixture(vikingdb_server_factory) -> None:
    first = vikingdb_server_factory(collections=("a",), quota=10)
    second = vikingdb_server_factory(collections=("b:key:int64",), api_key="k")
    assert first.running and second.running and first.port != second.port
    assert first.quota == 10
    assert second.store.collections["b"].key_field == "key"


def test_vikingdb_connection_fixture(vikingdb_connection) -> None:
    conn = json.loads(os.environ["AIRFLOW_CONN_VIKINGDB_DEFAULT"])
    assert conn["port"] == vikingdb_connection.port
    assert conn == json.loads(vikingdb_connection.connection_json())


def test_airflow_reads_the_connection(vikingdb_connection) -> None:
    from airflow.sdk import Connection

    conn = Connection.get("vikingdb_default")
    assert (conn.conn_type, conn.host, conn.port) == (
        "vikingdb",
        "http://127.0.0.1",
        vikingdb_connection.port,
    )
    assert (conn.login, conn.password) == ("AK", "SK")
    assert conn.extra_dejson == {"region": "cn-beijing"}
    from airflow_provider_vikingdb.hooks.vikingdb import VikingDBHook

    assert VikingDBHook().config.base_url == f"http://127.0.0.1:{vikingdb_connection.port}"


def test_plugin_imports_nothing_heavy() -> None:
    code = (
        "import sys\n"
        "import airflow_provider_vikingdb.local.pytest_plugin\n"
        "heavy = [m for m in ('airflow', 'http.server', 'socketserver', 'requests', 'volcengine',\n"
        "        'airflow_provider_vikingdb.local.server') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


def test_package_exports_local_vikingdb_lazily() -> None:
    code = (
        "import sys\n"
        "import airflow_provider_vikingdb.local as local\n"
        "assert 'airflow_provider_vikingdb.local.server' not in sys.modules\n"
        "from airflow_provider_vikingdb.local import LocalVikingDB\n"
        "assert LocalVikingDB.__name__ == 'LocalVikingDB'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "ok"
