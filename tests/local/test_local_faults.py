"""Scripted faults (fail_next, drop_next, stall_next), random 503s and added latency."""

from __future__ import annotations

import time

import pytest
import requests

from tests.local.vikingdb_signing_client import string_ids

DELETE = "/api/vikingdb/data/delete"


@pytest.fixture
def loaded(vikingdb_server):
    vikingdb_server.load("test_coll", [{"id": i} for i in string_ids(10)])
    return vikingdb_server


def test_fail_next_answers_once_and_applies_nothing(loaded, client) -> None:
    loaded.fail_next(DELETE, status=503, code="InternalError", message="boom", headers={"Retry-After": "1"})
    response = client.delete(ids=["uid_00000"])
    assert response.status_code == 503
    body = response.json()
    assert (body["code"], body["message"], body["result"]) == ("InternalError", "boom", None)
    assert body["request_id"] == loaded.requests[-1].request_id
    assert response.headers["Retry-After"] == "1"
    assert "uid_00000" in loaded.records("test_coll")
    logged = loaded.requests[-1]
    assert (logged.status, logged.code, logged.auth_ok, logged.ids_count) == (503, "InternalError", True, 1)
    # the next request is served normally
    assert client.delete(ids=["uid_00000"]).status_code == 200
    assert "uid_00000" not in loaded.records("test_coll")


def test_fail_next_times_and_short_path(loaded, client) -> None:
    loaded.fail_next("data/delete", times=2, status=429, code="TooManyRequests")
    assert [client.delete(ids=["uid_00001"]).status_code for _ in range(3)] == [429, 429, 200]


def test_fail_next_only_hits_its_path(loaded, client) -> None:
    loaded.fail_next("data/upsert")
    assert client.delete(ids=["uid_00001"]).status_code == 200
    assert client.upsert("test_coll", [{"id": "n"}]).status_code == 503
    assert "n" not in loaded.records("test_coll")


def test_fail_next_comes_before_auth(loaded, make_client) -> None:
    loaded.fail_next(DELETE, status=500)
    assert make_client(loaded, sk="WRONG").delete(ids=["uid_00001"]).status_code == 500
    assert loaded.requests[-1].auth_ok is False  # answered the fault, but the bad signature is logged
    assert make_client(loaded, sk="WRONG").delete(ids=["uid_00001"]).status_code == 401


def test_fail_next_after_lets_requests_through_first(loaded, client) -> None:
    loaded.fail_next(DELETE, after=2, status=400, code="InvalidParameter")
    statuses = [client.delete(ids=[f"uid_0000{n}"]).status_code for n in range(4)]
    assert statuses == [200, 200, 400, 200]
    assert "uid_00002" in loaded.records("test_coll")
    assert "uid_00001" not in loaded.records("test_coll")


def test_faults_queue_in_order(loaded, client) -> None:
    loaded.fail_next(DELETE, status=429, code="TooManyRequests")
    loaded.fail_next(DELETE, status=503, code="ServiceUnavailable")
    loaded.drop_next(DELETE)
    outcomes = []
    for _ in range(4):
        try:
            outcomes.append(client.delete(ids=["uid_00001"]).status_code)
        except requests.ConnectionError:
            outcomes.append("dropped")
    assert outcomes == [429, 503, "dropped", 200]
    assert all(r.auth_ok for r in loaded.requests[-4:])


def test_fail_next_with_a_non_json_body(loaded, client) -> None:
    loaded.fail_next(DELETE, status=502, body="<html><body>502 Bad Gateway</body></html>")
    response = client.delete(ids=["uid_00001"])
    assert response.status_code == 502
    assert response.text.startswith("<html>")
    assert response.headers["Content-Type"].startswith("text/html")
    assert "uid_00001" in loaded.records("test_coll")


GATEWAY_TIMEOUT_PAGE = "<html><head><title>504 Gateway Time-out</title></head><body>nginx</body></html>"


def test_fail_next_applied_applies_the_request_then_answers_the_fault(loaded, client) -> None:
    # a gateway that gave up waiting after the service did the work
    loaded.fail_next(DELETE, times=2, status=504, body=GATEWAY_TIMEOUT_PAGE, applied=True)
    first, second = client.delete(ids=["uid_00001"]), client.delete(ids=["uid_00002", "uid_00003"])
    assert (first.status_code, first.text) == (504, GATEWAY_TIMEOUT_PAGE)
    assert second.status_code == 504 and second.headers["Content-Type"].startswith("text/html")
    assert not {"uid_00001", "uid_00002", "uid_00003"} & set(loaded.records("test_coll"))
    logged = loaded.requests[-2:]
    assert [(r.status, r.fault, r.auth_ok, r.ids_count) for r in logged] == [
        (504, "fail", True, 1),
        (504, "fail", True, 2),
    ]
    assert first.headers["X-Tt-Logid"] == logged[0].request_id
    # an envelope fault can be applied too, and the next request is served normally
    loaded.fail_next(DELETE, status=502, code="BadGateway", applied=True)
    answered = client.delete(ids=["uid_00004"])
    assert (answered.status_code, answered.json()["code"]) == (502, "BadGateway")
    assert "uid_00004" not in loaded.records("test_coll")
    assert client.delete(ids=["uid_00005"]).json()["code"] == "Success"


def test_fail_next_applied_applies_only_what_the_service_would_accept(loaded, make_client) -> None:
    # the service refuses a bad signature; the gateway still answers its page
    loaded.fail_next(DELETE, status=504, body=GATEWAY_TIMEOUT_PAGE, applied=True)
    assert make_client(loaded, sk="WRONG").delete(ids=["uid_00001"]).status_code == 504
    assert loaded.requests[-1].auth_ok is False
    assert "uid_00001" in loaded.records("test_coll")


def test_drop_next_closes_the_connection_and_applies_nothing(loaded, client) -> None:
    loaded.drop_next(DELETE)
    with pytest.raises(requests.ConnectionError):
        client.delete(ids=["uid_00002"])
    assert "uid_00002" in loaded.records("test_coll")
    assert loaded.requests[-1].status is None
    assert loaded.requests[-1].code == "ConnectionDropped"
    assert client.delete(ids=["uid_00002"]).status_code == 200
    assert "uid_00002" not in loaded.records("test_coll")


def test_stall_next_trips_a_client_timeout(loaded, client) -> None:
    loaded.stall_next(DELETE, seconds=1.0)
    client.timeout = 0.2
    with pytest.raises(requests.Timeout):
        client.delete(ids=["uid_00003"])
    client.timeout = 10.0
    # After the stall the request is handled like a slow real service would: it is applied.
    deadline = time.monotonic() + 10

    # Applied first, logged once its answer is made: wait for both (a loaded machine shows the gap).
    def logged() -> bool:
        log = loaded.requests
        return bool(log) and (log[-1].body or {}).get("ids") == ["uid_00003"]

    while "uid_00003" in loaded.records("test_coll") or not logged():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert loaded.requests[-1].body["ids"] == ["uid_00003"] and loaded.requests[-1].status == 200
    # only once
    assert client.delete(ids=["uid_00004"]).status_code == 200


def test_stopping_during_a_stall_closes_the_connection_and_applies_nothing(loaded, client) -> None:
    import threading

    loaded.stall_next(DELETE, seconds=30.0)
    outcome: list[object] = []
    sender = threading.Thread(target=lambda: outcome.append(_send(client, "uid_00005")))
    sender.start()
    deadline = time.monotonic() + 10
    while loaded.faults.queues.get(DELETE):  # until the stalled request has taken its fault
        assert time.monotonic() < deadline
        time.sleep(0.02)
    started = time.monotonic()
    loaded.stop()
    sender.join(timeout=10)
    assert time.monotonic() - started < 5  # the stall did not hold stop() for its 30 s
    assert isinstance(outcome[0], requests.ConnectionError)
    assert "uid_00005" in loaded.records("test_coll")


def _send(client, uid: str) -> object:
    try:
        return client.delete(ids=[uid])
    except requests.RequestException as exc:
        return exc


def test_clear_faults(loaded, client) -> None:
    loaded.fail_next(DELETE, times=5)
    loaded.clear_faults()
    assert client.delete(ids=["uid_00001"]).status_code == 200


def test_times_must_be_positive(vikingdb_server) -> None:
    with pytest.raises(ValueError):
        vikingdb_server.fail_next(DELETE, times=0)
    with pytest.raises(ValueError):
        vikingdb_server.drop_next(DELETE, after=-1)
    with pytest.raises(ValueError):
        vikingdb_server.fail_next(DELETE, status="503")


def test_fail_rate_one_fails_every_data_request_but_not_ping(vikingdb_server_factory, make_client) -> None:
    server = vikingdb_server_factory(fail_rate=1.0)
    server.load("test_coll", [{"id": "a"}])
    response = make_client(server).delete(ids=["a"])
    assert (response.status_code, response.json()["code"]) == (503, "ServiceUnavailable")
    assert "a" in server.records("test_coll")
    assert requests.get(server.url + "/api/vikingdb/Ping", timeout=5).status_code == 200


def test_fail_rate_is_reproducible_with_a_seed(vikingdb_server_factory, make_client) -> None:
    def statuses(seed: int) -> list[int]:
        client = make_client(vikingdb_server_factory(fail_rate=0.3, seed=seed))
        return [client.delete(ids=["a"]).status_code for _ in range(40)]

    first = statuses(7)
    assert first == statuses(7)
    assert set(first) == {200, 503}


def test_latency_is_added(vikingdb_server_factory, make_client) -> None:
    server = vikingdb_server_factory(latency_ms=100)
    client = make_client(server)
    started = time.monotonic()
    assert client.delete(ids=["a"]).status_code == 200
    assert time.monotonic() - started >= 0.1  # a lower bound only: the server slept at least that long
