"""Transport faults: cut_next (an answer broken off in the body, the headers or the status line,
applied or not), trickle_next (one byte at a time) and fail_next(echo_headers=True) (a proxy
page that repeats the request headers, secrets included)."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest
import requests

from tests.local.vikingdb_signing_client import SigningClient

DELETE = "/api/vikingdb/data/delete"


@pytest.fixture
def loaded(vikingdb_server):
    vikingdb_server.load("test_coll", [{"id": i} for i in ("a", "b", "c")])
    return vikingdb_server


def test_cut_in_the_body_not_applied(loaded, client) -> None:
    loaded.cut_next("data/delete")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        client.delete(ids=["a"])
    assert "a" in loaded.records("test_coll")
    logged = loaded.requests[-1]
    assert (logged.fault, logged.status, logged.code, logged.auth_ok) == ("cut", 503, "InternalError", True)
    assert client.delete(ids=["a"]).status_code == 200  # a fresh connection, served normally
    assert "a" not in loaded.records("test_coll")


def test_cut_in_the_body_after_applying(loaded, client) -> None:
    loaded.cut_next(DELETE, applied=True)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        client.delete(ids=["a"])
    assert "a" not in loaded.records("test_coll")
    assert (loaded.requests[-1].status, loaded.requests[-1].code) == (200, "Success")


def test_cut_in_the_status_line(loaded, client) -> None:
    loaded.cut_next(DELETE, where="status")
    with pytest.raises(requests.ConnectionError, match="BadStatusLine"):
        client.delete(ids=["a"])
    assert "a" in loaded.records("test_coll")
    assert loaded.requests[-1].status is None


@pytest.mark.parametrize(("applied", "status"), [(False, 503), (True, 200)])
def test_cut_in_the_headers(loaded, client, applied, status) -> None:
    """A whole status line, then half the headers: http.client (so requests) takes this as an
    answer with that status and an empty body, which is why a client must not trust a 200
    whose body is not the JSON envelope."""
    loaded.cut_next(DELETE, where="headers", applied=applied)
    response = client.delete(ids=["a"])
    assert (response.status_code, response.content) == (status, b"")
    assert ("a" in loaded.records("test_coll")) is not applied


def test_cut_raw_bytes(loaded, client) -> None:
    """What goes over the wire: Content-Length promises more than is sent, then EOF."""
    loaded.cut_next(DELETE)
    raw = raw_exchange(loaded, client, {"collection_name": "test_coll", "ids": ["a"]})
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 ")
    length = int(
        next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))[15:]
    )
    assert 0 < len(body) < length


def test_cut_next_queues_and_counts_like_the_others(loaded, client) -> None:
    loaded.cut_next(DELETE, times=2, after=1)
    assert client.delete(ids=["a"]).status_code == 200
    for _ in range(2):
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            client.delete(ids=["b"])
    assert client.delete(ids=["b"]).status_code == 200
    with pytest.raises(ValueError, match="where"):
        loaded.cut_next(DELETE, where="middle")


def test_trickle_sends_one_byte_per_interval_and_others_are_served_meanwhile(loaded, client, make_client):
    loaded.trickle_next(DELETE, interval=0.2)
    sock = send_raw(loaded, client, {"collection_name": "test_coll", "ids": ["a"]})
    try:
        sock.settimeout(5)
        arrivals = []
        for _ in range(3):
            assert len(sock.recv(1024)) == 1  # never more than one byte at a time
            arrivals.append(time.monotonic())
        assert arrivals[2] - arrivals[0] >= 0.3  # two intervals (lower bound only)
        # the trickling request was applied; another connection is answered at once
        other = make_client(loaded)
        assert other.delete(ids=["b"]).status_code == 200
        assert not {"a", "b"} & set(loaded.records("test_coll"))
        assert loaded.requests[-2].fault == "trickle"
    finally:
        sock.close()


def test_a_trickled_answer_is_whole_and_valid(loaded, client) -> None:
    loaded.trickle_next(DELETE, interval=0.002)
    client.timeout = (5, 1.0)  # the read timeout restarts with every byte, so it never fires
    response = client.delete(ids=["c"])
    assert response.status_code == 200
    assert response.json()["code"] == "Success"
    assert "c" not in loaded.records("test_coll")


def test_stop_ends_a_trickle(vikingdb_server_factory, make_client) -> None:
    server = vikingdb_server_factory()
    client = make_client(server)
    server.trickle_next(DELETE, interval=30)
    sock = send_raw(server, client, {"collection_name": "test_coll", "ids": ["a"]})
    try:
        sock.settimeout(5)
        assert sock.recv(1024) == b"H"
        stopper = threading.Thread(target=server.stop)
        started = time.monotonic()
        stopper.start()
        assert sock.recv(1024) == b""  # closed, long before the next byte was due
        stopper.join(10)
        assert time.monotonic() - started < 10
    finally:
        sock.close()


def test_trickle_interval_must_be_positive(vikingdb_server) -> None:
    with pytest.raises(ValueError, match="interval"):
        vikingdb_server.trickle_next(DELETE, interval=0)


def test_proxy_page_echoes_every_request_header_verbatim(loaded, make_client) -> None:
    client = make_client(loaded, session_token="STS-TOKEN-SECRET")
    loaded.fail_next(DELETE, status=502, echo_headers=True)
    prepared = client.prepare(DELETE, {"collection_name": "test_coll", "ids": ["a"]})
    response = client.send(prepared)
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        json.loads(response.text)
    assert f"Authorization: {prepared.headers['Authorization']}" in response.text
    assert "X-Security-Token: STS-TOKEN-SECRET" in response.text
    assert "a" in loaded.records("test_coll")
    assert (loaded.requests[-1].fault, loaded.requests[-1].status) == ("fail", 502)


def test_proxy_page_echoes_a_bearer_key(vikingdb_server_factory) -> None:
    server = vikingdb_server_factory(api_key="KEY-SECRET")
    server.fail_next("data/delete", status=504, echo_headers=True, headers={"Retry-After": "2"})
    response = requests.post(
        server.url + DELETE,
        json={"collection_name": "test_coll", "ids": ["a"]},
        headers={"Authorization": "Bearer KEY-SECRET"},
        timeout=5,
    )
    assert response.status_code == 504
    assert response.headers["Retry-After"] == "2"
    assert "Authorization: Bearer KEY-SECRET" in response.text
    assert "504 Gateway Timeout" in response.text


def test_echo_headers_and_body_are_exclusive(vikingdb_server) -> None:
    with pytest.raises(ValueError, match="echo_headers"):
        vikingdb_server.fail_next(DELETE, body="<html></html>", echo_headers=True)


def test_the_log_line_names_the_fault(loaded, client, caplog) -> None:
    caplog.set_level("INFO", logger="airflow_provider_vikingdb.local")
    loaded.cut_next(DELETE, where="status")
    with pytest.raises(requests.ConnectionError):
        client.delete(ids=["a"])
    line = [r.getMessage() for r in caplog.records if r.name == "airflow_provider_vikingdb.local"][-1]
    assert line.startswith(f"POST {DELETE} - InternalError ids=1 request_id=local-")
    assert line.endswith(" fault=cut")


# --- raw HTTP, to see the bytes ---


def send_raw(server, client: SigningClient, body: dict) -> socket.socket:
    prepared = client.prepare(DELETE, body)
    headers = {
        **prepared.headers,
        "Host": f"127.0.0.1:{server.port}",
        "Content-Length": str(len(prepared.body)),
    }
    head = f"POST {DELETE} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(head.encode("latin-1") + prepared.body)
    return sock


def raw_exchange(server, client: SigningClient, body: dict) -> bytes:
    sock = send_raw(server, client, body)
    try:
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        sock.close()
