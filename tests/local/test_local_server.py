"""HTTP behaviour: routing, the envelope, the request log, keep-alive, TCP_NODELAY, lifecycle,
concurrency, and the Python API's small helpers."""

from __future__ import annotations

import json
import socket
import threading

import pytest
import requests

from airflow_provider_vikingdb.local import LocalVikingDB
from tests.local.vikingdb_signing_client import string_ids

DELETE = "/api/vikingdb/data/delete"


def test_ping_needs_no_signature(vikingdb_server) -> None:
    response = requests.get(vikingdb_server.url + "/api/vikingdb/Ping", timeout=5)
    assert response.status_code == 200
    assert response.json()["code"] == "Success"
    assert vikingdb_server.requests[-1].auth_ok is None


def test_signed_ping_is_checked(vikingdb_server, make_client) -> None:
    assert make_client(vikingdb_server).post("/api/vikingdb/Ping", method="GET").status_code == 200
    assert vikingdb_server.requests[-1].auth_ok is True
    response = make_client(vikingdb_server, sk="WRONG").post("/api/vikingdb/Ping", method="GET")
    assert response.status_code == 401


def test_unknown_path_is_404(vikingdb_server, client) -> None:
    response = client.post("/api/vikingdb/data/search/vector", {"collection_name": "test_coll"})
    assert response.status_code == 404
    assert response.json()["code"] == "NotFound.Api"
    assert requests.get(vikingdb_server.url + "/", timeout=5).status_code == 404


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_wrong_method_is_405(vikingdb_server, method) -> None:
    response = requests.request(method, vikingdb_server.url + DELETE, timeout=5)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert response.json()["code"] == "MethodNotAllowed"
    assert requests.post(vikingdb_server.url + "/api/vikingdb/Ping", timeout=5).status_code == 405


def test_request_log(vikingdb_server, client) -> None:
    vikingdb_server.clear_requests()
    client.delete(ids=["a", "b"])
    client.upsert("test_coll", [{"id": "x"}])
    log = vikingdb_server.requests
    assert [(r.method, r.path, r.status, r.code, r.ids_count, r.auth_ok) for r in log] == [
        ("POST", DELETE, 200, "Success", 2, True),
        ("POST", "/api/vikingdb/data/upsert", 200, "Success", 1, True),
    ]
    assert log[0].body == {"collection_name": "test_coll", "ids": ["a", "b"]}
    assert log[0].headers["Content-Type"] == "application/json"
    assert log[0].request_id != log[1].request_id
    assert log[0].time <= log[1].time
    vikingdb_server.clear_requests()
    assert vikingdb_server.requests == []


def test_logging_line_per_request_without_authorization(vikingdb_server, client, caplog) -> None:
    caplog.set_level("INFO", logger="airflow_provider_vikingdb.local")
    client.delete(ids=["a", "b", "c"])
    lines = [r.getMessage() for r in caplog.records if r.name == "airflow_provider_vikingdb.local"]
    assert len(lines) == 1
    request_id = vikingdb_server.requests[-1].request_id
    assert lines[0] == f"POST {DELETE} 200 Success ids=3 request_id={request_id}"
    assert "Signature" not in caplog.text and "HMAC" not in caplog.text


def test_keep_alive_one_connection_for_many_requests(vikingdb_server, client) -> None:
    vikingdb_server.clear_requests()
    for n in range(50):
        assert client.delete(ids=[f"id{n}"]).status_code == 200
    ports = {r.client for r in vikingdb_server.requests}
    assert len(ports) == 1, "every request should reuse the first connection"


def test_tcp_nodelay_is_set_on_accepted_sockets(vikingdb_server, client) -> None:
    httpd = vikingdb_server._httpd
    seen: list[int] = []
    original = httpd.get_request

    def spy():
        sock, address = original()
        seen.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return sock, address

    httpd.get_request = spy
    client.session.close()
    client.session = requests.Session()
    assert client.delete(ids=["a"]).status_code == 200
    assert seen and all(seen)


def test_connection_json(vikingdb_server_factory) -> None:
    server = vikingdb_server_factory(ak="MY_AK", sk="MY_SK", region="cn-shanghai")
    assert json.loads(server.connection_json()) == {
        "conn_type": "vikingdb",
        "host": "http://127.0.0.1",
        "port": server.port,
        "login": "MY_AK",
        "password": "MY_SK",
        "extra": {"region": "cn-shanghai"},
    }
    with_key = vikingdb_server_factory(api_key="k")
    assert json.loads(with_key.connection_json())["extra"] == {"region": "cn-beijing", "api_key": "k"}


def test_url_host_port(vikingdb_server) -> None:
    assert vikingdb_server.host == "127.0.0.1"
    assert vikingdb_server.port > 0
    assert vikingdb_server.url == f"http://127.0.0.1:{vikingdb_server.port}"


def test_resource_ids_and_add_collection(vikingdb_server, client) -> None:
    assert vikingdb_server.resource_id("test_coll_int") == "vdb-test_coll_int"
    assert vikingdb_server.add_collection("other", key_type="int64") == "vdb-other"
    vikingdb_server.load("other", [{"id": 5}])
    response = client.post(DELETE, {"resource_id": "vdb-other", "ids": [5]})
    assert response.status_code == 200, response.text
    assert vikingdb_server.records("other") == {}
    with pytest.raises(ValueError):
        vikingdb_server.add_collection("other")
    with pytest.raises(KeyError):
        vikingdb_server.resource_id("nope")


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ValueError):
        LocalVikingDB(collections=("c:id:float",))
    with pytest.raises(ValueError):
        LocalVikingDB(collections=("c",), indexes=("missing:idx",))
    with pytest.raises(ValueError):
        LocalVikingDB(fail_rate=2)


def test_start_is_ready_and_stop_frees_the_port() -> None:
    server = LocalVikingDB(collections=("c",))
    with server:
        port = server.port
        assert server.running
        # connectable the moment start() returns
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    assert not server.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    # can be started again
    with server:
        assert requests.get(server.url + "/api/vikingdb/Ping", timeout=5).status_code == 200


def test_stop_closes_idle_keep_alive_connections(vikingdb_server_factory, make_client) -> None:
    server = vikingdb_server_factory()
    client = make_client(server)
    assert client.delete(ids=["a"]).status_code == 200
    server.stop()
    with pytest.raises(requests.ConnectionError):
        client.delete(ids=["a"])


def test_many_concurrent_clients(vikingdb_server, make_client) -> None:
    ids = string_ids(40 * 25)
    vikingdb_server.load("test_coll", [{"id": i} for i in ids])
    vikingdb_server.clear_requests()
    failures: list[str] = []

    def work(n: int) -> None:
        client = make_client(vikingdb_server)
        for k in range(5):
            batch = ids[(n * 5 + k) * 5 : (n * 5 + k + 1) * 5]
            response = client.delete(ids=batch)
            if response.status_code != 200:
                failures.append(response.text)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert vikingdb_server.records("test_coll") == {}
    assert len(vikingdb_server.requests) == 200
    assert len({r.request_id for r in vikingdb_server.requests}) == 200


def test_chunked_body_is_read(vikingdb_server, client) -> None:
    vikingdb_server.load("test_coll", [{"id": "a"}])
    prepared = client.prepare(DELETE, {"collection_name": "test_coll", "ids": ["a"]})
    response = client.session.post(
        prepared.url, headers=prepared.headers, data=iter([prepared.body[:10], prepared.body[10:]]), timeout=5
    )
    assert response.status_code == 200, response.text
    assert vikingdb_server.records("test_coll") == {}
