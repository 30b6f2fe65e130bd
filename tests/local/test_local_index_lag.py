"""The index lag: the index shows the collection as it was ``index_lag`` ago, in write order,
for upserts, updates, deletes and TTL expiries alike; ``del_all`` has its own lag, and what was
written after a ``del_all`` waits for it. Time is a fake clock, stepped by the tests."""

from __future__ import annotations

import pytest

from tests.local.vikingdb_signing_client import ok_result, string_ids

FETCH_IN_INDEX = "/api/vikingdb/data/fetch_in_index"
RANDOM = "/api/vikingdb/data/search/random"
SCALAR = "/api/vikingdb/data/search/scalar"
AGG = "/api/vikingdb/data/agg"
UPDATE = "/api/vikingdb/data/update"
INDEX = {"collection_name": "docs", "index_name": "docs_index"}


@pytest.fixture
def server(vikingdb_server_factory, clock):
    return vikingdb_server_factory(
        collections=("docs",),
        fields={"docs": {"n": "int64", "run": "string"}},
        index_lag=20,
        del_all_index_lag=300,
        clock=clock,
    )


@pytest.fixture
def client(server, make_client):
    return make_client(server)


def in_index(client, ids) -> list:
    """The ids fetch_in_index finds."""
    found = ok_result(client.post(FETCH_IN_INDEX, {**INDEX, "ids": list(ids)}))["fetch"]
    return [item["id"] for item in found]


def random_ids(client, **body) -> list:
    return [item["id"] for item in ok_result(client.post(RANDOM, {**INDEX, "limit": 100, **body}))["data"]]


def scalar_ids(client, **body) -> list:
    answer = ok_result(client.post(SCALAR, {**INDEX, "field": "n", "order": "asc", "limit": 100, **body}))
    return [item["id"] for item in answer["data"]]


def total(client, **body) -> int:
    return ok_result(client.post(AGG, {**INDEX, "op": "count", **body}))["agg"]["__TOTAL__"]


def test_an_upsert_reaches_the_index_after_the_lag(server, client, clock) -> None:
    assert client.upsert("docs", [{"id": "new", "n": 1, "run": "r"}]).status_code == 200
    assert set(server.records("docs")) == {"new"}  # the collection: at once
    clock.advance(19)  # index_lag - 1 s
    assert in_index(client, ["new"]) == []
    assert random_ids(client) == []
    assert scalar_ids(client) == []
    assert total(client) == 0
    assert random_ids(client, filter={"op": "must", "field": "run", "conds": ["r"]}) == []
    clock.advance(1)
    assert in_index(client, ["new"]) == ["new"]
    assert random_ids(client) == ["new"]
    assert scalar_ids(client) == ["new"]
    assert total(client) == 1
    assert random_ids(client, filter={"op": "must", "field": "run", "conds": ["r"]}) == ["new"]


def test_a_deleted_id_stays_in_the_index_until_the_lag_has_passed(server, client, clock) -> None:
    server.load("docs", [{"id": "a", "n": 1}, {"id": "b", "n": 2}])
    assert client.delete("docs", ids=["a"]).status_code == 200
    assert set(server.records("docs")) == {"b"}
    clock.advance(19.9)
    assert in_index(client, ["a", "b"]) == ["a", "b"]
    assert scalar_ids(client, filter={"op": "range", "field": "n", "lte": 1}) == ["a"]
    assert total(client) == 2
    clock.advance(0.1)
    assert in_index(client, ["a", "b"]) == ["b"]
    assert scalar_ids(client, filter={"op": "range", "field": "n", "lte": 1}) == []
    assert total(client) == 1


def test_an_update_shows_the_old_fields_until_the_lag_has_passed(server, client, clock) -> None:
    server.load("docs", [{"id": "a", "n": 1, "run": "old"}])
    assert client.post(UPDATE, {"collection_name": "docs", "data": [{"id": "a", "n": 5}]}).status_code == 200
    assert server.records("docs") == {"a": {"n": 5, "run": "old"}}
    clock.advance(10)
    assert server.index_records("docs") == {"a": {"n": 1, "run": "old"}}
    assert scalar_ids(client, filter={"op": "range", "field": "n", "gte": 5}) == []
    clock.advance(10)
    assert server.index_records("docs") == {"a": {"n": 5, "run": "old"}}
    assert scalar_ids(client, filter={"op": "range", "field": "n", "gte": 5}) == ["a"]


def test_changes_reach_the_index_in_order(server, client, clock) -> None:
    client.upsert("docs", [{"id": "a", "n": 1}])
    clock.advance(5)
    client.delete("docs", ids=["a"])
    clock.advance(5)
    client.upsert("docs", [{"id": "a", "n": 3}])
    clock.advance(10)  # the first upsert is due
    assert server.index_records("docs") == {"a": {"n": 1}}
    clock.advance(5)  # the delete
    assert server.index_records("docs") == {}
    clock.advance(5)  # the second upsert
    assert server.index_records("docs") == {"a": {"n": 3}}


def test_del_all_uses_its_own_lag(server, client, clock) -> None:
    server.load("docs", [{"id": i, "n": 1} for i in string_ids(5)])
    assert (server.index_lag, server.del_all_index_lag) == (20, 300)
    assert client.delete("docs", del_all=True).status_code == 200
    assert server.records("docs") == {}
    clock.advance(20)  # an ordinary change would be there by now
    assert len(random_ids(client)) == 5
    assert total(client) == 5
    clock.advance(279.9)
    assert len(random_ids(client)) == 5
    clock.advance(0.1)
    assert random_ids(client) == []
    assert total(client) == 0


def test_writes_after_a_del_all_wait_for_it(server, client, clock) -> None:
    server.load("docs", [{"id": "old", "n": 1}])
    client.delete("docs", del_all=True)
    clock.advance(1)
    client.upsert("docs", [{"id": "new", "n": 2}])
    client.delete("docs", ids=["old"])
    clock.advance(100)  # the upsert's own lag has long passed, but the del_all comes first
    assert in_index(client, ["old", "new"]) == ["old"]
    clock.advance(199)  # the del_all is due: it and everything due behind it apply
    assert in_index(client, ["old", "new"]) == ["new"]
    assert server.index_records("docs") == {"new": {"n": 2}}


def test_a_short_del_all_lag_still_waits_for_earlier_writes(vikingdb_server_factory, make_client, clock):
    server = vikingdb_server_factory(collections=("docs",), index_lag=20, del_all_index_lag=0, clock=clock)
    client = make_client(server)
    server.load("docs", [{"id": "old"}])
    client.upsert("docs", [{"id": "written"}])
    clock.advance(1)
    client.delete("docs", del_all=True)
    clock.advance(1)  # the del_all is due, but the upsert before it is not: the index waits
    assert set(server.index_records("docs")) == {"old"}
    clock.advance(18)
    assert server.index_records("docs") == {}


def test_del_all_lag_follows_index_lag_unless_set(vikingdb_server_factory, clock) -> None:
    server = vikingdb_server_factory(index_lag=7, clock=clock)
    assert server.del_all_index_lag == 7
    server.index_lag = 3
    assert server.del_all_index_lag == 3
    server.del_all_index_lag = 60
    server.index_lag = 1
    assert (server.index_lag, server.del_all_index_lag) == (1, 60)
    server.del_all_index_lag = None
    assert server.del_all_index_lag == 1
    with pytest.raises(ValueError, match="del_all_index_lag"):
        server.del_all_index_lag = -1


def test_lowering_the_del_all_lag_at_run_time_makes_it_due(server, client, clock) -> None:
    server.load("docs", [{"id": "a"}])
    client.delete("docs", del_all=True)
    assert in_index(client, ["a"]) == ["a"]
    server.del_all_index_lag = 0
    assert in_index(client, ["a"]) == []


def test_loaded_records_count_as_written_long_ago(server, client) -> None:
    server.load("docs", [{"id": "seed", "n": 1, "run": "r"}])
    assert in_index(client, ["seed"]) == ["seed"]
    assert scalar_ids(client) == ["seed"]
    assert total(client, filter={"op": "must", "field": "run", "conds": ["r"]}) == 1


def test_index_records_and_records_differ_during_the_lag(server, client, clock) -> None:
    server.load("docs", [{"id": "a", "n": 1}])
    client.upsert("docs", [{"id": "b", "n": 2}])
    assert set(server.records("docs")) == {"a", "b"}
    assert set(server.index_records("docs")) == {"a"}
    clock.advance(20)
    assert set(server.index_records("docs")) == {"a", "b"}
