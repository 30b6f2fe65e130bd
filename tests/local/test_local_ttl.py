"""TTL: upsert and update take ``ttl`` (int32 seconds); the record leaves the collection the
moment it expires and the index ``index_lag`` later. Time is a fake clock."""

from __future__ import annotations

import pytest

from tests.local.vikingdb_signing_client import error_of, ok_result

UPSERT = "/api/vikingdb/data/upsert"
UPDATE = "/api/vikingdb/data/update"


@pytest.fixture
def server(vikingdb_server_factory, clock):
    return vikingdb_server_factory(collections=("docs",), index_lag=20, clock=clock)


@pytest.fixture
def client(server, make_client):
    return make_client(server)


def upsert(client, rows, **extra):
    return client.post(UPSERT, {"collection_name": "docs", "data": rows, **extra})


def update(client, rows, **extra):
    return client.post(UPDATE, {"collection_name": "docs", "data": rows, **extra})


def fetched(client, ids, index=None) -> list:
    return [item["id"] for item in ok_result(client.fetch("docs", ids, index=index))["fetch"]]


def test_a_record_expires_from_the_collection_at_once_and_from_the_index_after_the_lag(
    server, client, clock
) -> None:
    ok_result(upsert(client, [{"id": "a", "x": 1}, {"id": "b"}], ttl=60))
    ok_result(upsert(client, [{"id": "keep"}]))
    assert server.expires_in("docs", "a") == 60
    assert server.expires_in("docs", "keep") is None
    clock.advance(59.9)
    assert fetched(client, ["a", "b", "keep"]) == ["a", "b", "keep"]
    clock.advance(0.1)  # expiry
    assert fetched(client, ["a", "b", "keep"]) == ["keep"]
    assert set(server.records("docs")) == {"keep"}
    assert fetched(client, ["a", "b", "keep"], index="docs_index") == ["a", "b", "keep"]
    clock.advance(19.9)
    assert fetched(client, ["a", "b"], index="docs_index") == ["a", "b"]
    clock.advance(0.1)  # expiry + index_lag
    assert fetched(client, ["a", "b", "keep"], index="docs_index") == ["keep"]


def test_expiry_is_noticed_whatever_the_next_request_is(server, client, clock) -> None:
    ok_result(upsert(client, [{"id": "a"}], ttl=5))
    clock.advance(30)  # nobody asked in between; the index learns of it at 5 + 20
    assert fetched(client, ["a"], index="docs_index") == []
    assert server.records("docs") == {}


def test_a_later_upsert_without_ttl_clears_it(server, client, clock) -> None:
    ok_result(upsert(client, [{"id": "a"}], ttl=10))
    clock.advance(5)
    ok_result(upsert(client, [{"id": "a", "v": 2}]))
    assert server.expires_in("docs", "a") is None
    clock.advance(100)
    assert server.records("docs") == {"a": {"v": 2}}
    assert server.index_records("docs") == {"a": {"v": 2}}


def test_ttl_zero_means_no_expiry(server, client, clock) -> None:
    ok_result(upsert(client, [{"id": "a"}], ttl=10))
    ok_result(upsert(client, [{"id": "a"}], ttl=0))
    clock.advance(1000)
    assert "a" in server.records("docs")


def test_a_later_upsert_with_ttl_restarts_it(server, client, clock) -> None:
    ok_result(upsert(client, [{"id": "a"}], ttl=10))
    clock.advance(8)
    ok_result(upsert(client, [{"id": "a"}], ttl=10))
    clock.advance(8)
    assert "a" in server.records("docs")
    clock.advance(2)
    assert server.records("docs") == {}


def test_update_keeps_the_ttl_unless_given_one(server, client, clock) -> None:
    ok_result(upsert(client, [{"id": "a", "x": 1}, {"id": "b", "x": 1}], ttl=10))
    clock.advance(5)
    ok_result(update(client, [{"id": "a", "x": 2}]))  # no ttl: kept, like missing fields
    ok_result(update(client, [{"id": "b", "x": 2}], ttl=100))  # restarts from now
    assert server.expires_in("docs", "a") == 5
    assert server.expires_in("docs", "b") == 100
    clock.advance(5)
    assert server.records("docs") == {"b": {"x": 2}}


def test_an_expired_record_cannot_be_updated(server, client, clock) -> None:
    ok_result(upsert(client, [{"id": "a"}], ttl=1))
    clock.advance(1)
    code, message = error_of(update(client, [{"id": "a", "x": 1}]))
    assert code == "InvalidParameter" and "'a'" in message


def test_a_deleted_record_does_not_come_back_or_expire_twice(server, client, clock) -> None:
    ok_result(upsert(client, [{"id": "a"}], ttl=10))
    assert client.delete("docs", ids=["a"]).status_code == 200
    assert server.expires_in("docs", "a") is None
    server.load("docs", [{"id": "a", "v": "loaded"}])  # load writes no ttl
    clock.advance(100)
    assert server.records("docs") == {"a": {"v": "loaded"}}
    assert server.index_records("docs") == {"a": {"v": "loaded"}}


def test_del_all_drops_pending_expiries(server, client, clock) -> None:
    ok_result(upsert(client, [{"id": "a"}], ttl=10))
    client.delete("docs", del_all=True)
    ok_result(upsert(client, [{"id": "a"}]))
    clock.advance(100)
    assert server.records("docs") == {"a": {}}


@pytest.mark.parametrize(
    "ttl",
    [-1, 2**31, 1.5, "60", True, [60]],
    ids=["negative", "over-int32", "float", "string", "bool", "list"],
)
def test_invalid_ttl_is_refused_and_applies_nothing(server, client, ttl) -> None:
    code, message = error_of(upsert(client, [{"id": "a"}], ttl=ttl))
    assert code == "InvalidParameter"
    assert "ttl" in message and "2147483647" in message
    assert server.records("docs") == {}
    server.load("docs", [{"id": "b"}])
    code, _ = error_of(update(client, [{"id": "b", "x": 1}], ttl=ttl))
    assert code == "InvalidParameter"
    assert server.records("docs") == {"b": {}}


def test_the_largest_ttl_is_accepted(server, client) -> None:
    ok_result(upsert(client, [{"id": "a"}], ttl=2**31 - 1))
    assert server.expires_in("docs", "a") == 2**31 - 1
