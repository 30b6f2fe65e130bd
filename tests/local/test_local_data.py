"""upsert, update, fetch_in_collection, fetch_in_index, search/random, and the index lag."""

from __future__ import annotations

import time

import pytest

from tests.local.vikingdb_signing_client import string_ids

UPSERT = "/api/vikingdb/data/upsert"
UPDATE = "/api/vikingdb/data/update"
FETCH_IN_INDEX = "/api/vikingdb/data/fetch_in_index"
RANDOM = "/api/vikingdb/data/search/random"


def result(response) -> dict:
    assert response.status_code == 200, response.text
    assert response.json()["code"] == "Success"
    return response.json()["result"]


def random_search(client, collection="test_coll", index="test_coll_index", **extra):
    return client.post(RANDOM, {"collection_name": collection, "index_name": index, **extra})


def wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


# --- upsert / update / fetch ---


def test_upsert_then_fetch(vikingdb_server, client) -> None:
    rows = [{"id": "a", "text": "alpha", "vec": [0.1, 0.2]}, {"id": "b", "text": "beta"}]
    assert result(client.upsert("test_coll", rows)) == {"token_usage": {}}
    fetched = result(client.fetch("test_coll", ["a", "b", "zz"]))
    assert fetched == {
        "fetch": [
            {"id": "a", "fields": {"text": "alpha", "vec": [0.1, 0.2]}},
            {"id": "b", "fields": {"text": "beta"}},
        ],
        "ids_not_exist": ["zz"],
    }
    assert vikingdb_server.records("test_coll") == {
        "a": {"text": "alpha", "vec": [0.1, 0.2]},
        "b": {"text": "beta"},
    }
    assert vikingdb_server.requests[-2].ids_count == 2


def test_upsert_replaces_the_whole_record(vikingdb_server, client) -> None:
    client.upsert("test_coll", [{"id": "a", "x": 1, "y": 2}])
    client.upsert("test_coll", [{"id": "a", "x": 3}])
    assert vikingdb_server.records("test_coll") == {"a": {"x": 3}}


def test_update_keeps_missing_fields(vikingdb_server, client) -> None:
    client.upsert("test_coll", [{"id": "a", "x": 1, "y": 2}])
    result(client.post(UPDATE, {"collection_name": "test_coll", "data": [{"id": "a", "x": 9, "z": 0}]}))
    assert vikingdb_server.records("test_coll") == {"a": {"x": 9, "y": 2, "z": 0}}


def test_update_of_an_unknown_id_fails_whole(vikingdb_server, client) -> None:
    vikingdb_server.load("test_coll", [{"id": "a", "x": 1}])
    response = client.post(
        UPDATE, {"collection_name": "test_coll", "data": [{"id": "a", "x": 2}, {"id": "ghost", "x": 2}]}
    )
    assert (response.status_code, response.json()["code"]) == (400, "InvalidParameter")
    assert vikingdb_server.records("test_coll") == {"a": {"x": 1}}


def test_upsert_int64_collection(vikingdb_server, client) -> None:
    result(client.upsert("test_coll_int", [{"id": 7, "n": 1}, {"id": -(2**63), "n": 2}]))
    assert set(vikingdb_server.records("test_coll_int")) == {7, -(2**63)}
    assert result(client.fetch("test_coll_int", [7, 8]))["ids_not_exist"] == [8]


@pytest.mark.parametrize(
    ("collection", "rows", "code"),
    [
        ("test_coll", [], "InvalidParameter"),
        ("test_coll", [{"id": f"r{n}"} for n in range(101)], "InvalidParameter"),
        ("test_coll", [{"id": "ok"}, {"text": "no key"}], "InvalidParameter"),
        ("test_coll", [{"id": "ok"}, {"id": 5}], "InvalidParameter"),
        ("test_coll", [{"id": "ok"}, "not an object"], "InvalidParameter"),
        ("test_coll_int", [{"id": 1}, {"id": 0}], "InvalidParameter"),
        ("test_coll_int", [{"id": 1}, {"id": True}], "InvalidParameter"),
        ("test_coll_int", [{"id": 2**63}], "InvalidParameter"),
        ("test_coll_int", [{"id": "1"}], "InvalidParameter"),
        ("no_such", [{"id": "a"}], "NotFound.VikingdbCollection"),
    ],
    ids=[
        "empty",
        "101-rows",
        "missing-key",
        "int-in-string-coll",
        "row-not-object",
        "int64-zero",
        "bool",
        "int64-overflow",
        "string-in-int-coll",
        "unknown-collection",
    ],
)
def test_upsert_validation(vikingdb_server, client, collection, rows, code) -> None:
    response = client.upsert(collection, rows)
    assert response.json()["code"] == code
    assert response.status_code == (404 if code.startswith("NotFound") else 400)
    assert vikingdb_server.records("test_coll") == {}
    assert vikingdb_server.records("test_coll_int") == {}


def test_upsert_without_data_is_missing_parameter(client) -> None:
    response = client.post(UPSERT, {"collection_name": "test_coll"})
    assert (response.status_code, response.json()["code"]) == (400, "MissingParameter")


def test_upsert_100_rows_is_allowed(vikingdb_server, client) -> None:
    result(client.upsert("test_coll", [{"id": i} for i in string_ids(100)]))
    assert len(vikingdb_server.records("test_coll")) == 100


def test_custom_key_field(vikingdb_server_factory, make_client) -> None:
    server = vikingdb_server_factory(collections=("items:item_id:int64",))
    client = make_client(server)
    result(client.upsert("items", [{"item_id": 42, "name": "x"}]))
    assert server.records("items") == {42: {"name": "x"}}
    assert client.upsert("items", [{"id": 43}]).status_code == 400
    assert result(client.fetch("items", [42], index="items_index"))["fetch"] == [
        {"id": 42, "fields": {"name": "x"}}
    ]


def test_fetch_validation(client) -> None:
    assert client.fetch("test_coll", []).json()["code"] == "InvalidParameter"
    assert client.fetch("test_coll", string_ids(101)).json()["code"] == "InvalidParameter"
    assert client.fetch("test_coll", [1]).json()["code"] == "InvalidParameter"
    response = client.post("/api/vikingdb/data/fetch_in_collection", {"collection_name": "test_coll"})
    assert (response.status_code, response.json()["code"]) == (400, "MissingParameter")


# --- indexes ---


def test_unknown_index_is_404(client) -> None:
    response = client.fetch("test_coll", ["a"], index="nope")
    assert response.status_code == 404
    assert response.json()["code"] == "NotFound.VikingdbIndex"
    response = random_search(client, index="test_coll_int_index")
    assert response.json()["code"] == "NotFound.VikingdbIndex"


def test_missing_index_name(client) -> None:
    response = client.post(FETCH_IN_INDEX, {"collection_name": "test_coll", "ids": ["a"]})
    assert (response.status_code, response.json()["code"]) == (400, "MissingParameter")


def test_extra_index(vikingdb_server_factory, make_client) -> None:
    server = vikingdb_server_factory(collections=("docs",), indexes=("docs:by_date",))
    server.add_collection("other", indexes=("other_hnsw",))
    client = make_client(server)
    server.load("docs", [{"id": "a"}])
    assert result(client.fetch("docs", ["a"], index="by_date"))["fetch"] == [{"id": "a", "fields": {}}]
    assert result(client.fetch("docs", ["a"], index="docs_index"))["fetch"] == [{"id": "a", "fields": {}}]
    assert random_search(client, "other", "other_hnsw").status_code == 200
    assert random_search(client, "other", "other_index").status_code == 200


def test_search_random(vikingdb_server, client) -> None:
    vikingdb_server.load("test_coll", [{"id": i, "text": i.upper(), "n": 1} for i in string_ids(30)])
    found = result(random_search(client, limit=5, output_fields=["text"]))
    assert found["total_return_count"] == 5
    assert len(found["data"]) == 5
    for item in found["data"]:
        assert item["fields"] == {"text": item["id"].upper()}
        assert item["score"] == 1.0
    assert result(random_search(client, limit=100))["total_return_count"] == 30
    assert result(random_search(client, limit=100, offset=25))["total_return_count"] == 5
    assert random_search(client, limit=0).json()["code"] == "InvalidParameter"
    assert random_search(client, limit=5001).json()["code"] == "InvalidParameter"
    assert random_search(client, filter={"op": "must"}).json()["code"] == "InvalidParameter"


def test_search_random_on_empty_index(client) -> None:
    assert result(random_search(client)) == {"data": [], "total_return_count": 0, "filter_matched_count": 0}


# --- the index lag ---


def test_fetch_in_index_sees_a_delete_only_after_the_lag(vikingdb_server_factory, make_client) -> None:
    server = vikingdb_server_factory(index_lag=0.5)
    client = make_client(server)
    server.load("test_coll", [{"id": "a", "t": 1}, {"id": "b", "t": 2}])
    sent = time.monotonic()
    assert client.delete(ids=["a"]).status_code == 200
    # The collection: at once.
    assert result(client.fetch("test_coll", ["a", "b"]))["ids_not_exist"] == ["a"]
    assert set(server.records("test_coll")) == {"b"}

    # The index: only once the lag has passed, never before.
    def gone_from_index() -> bool:
        return result(client.fetch("test_coll", ["a"], index="test_coll_index"))["ids_not_exist"] == ["a"]

    wait_until(gone_from_index)
    assert time.monotonic() - sent >= 0.5
    assert set(server.index_records("test_coll")) == {"b"}


def test_index_lag_holds_deletes_until_it_is_lowered(vikingdb_server, client) -> None:
    # A long lag makes "still in the index" certain however slow the machine is;
    # lowering it at run time makes everything due.
    vikingdb_server.index_lag = 60
    vikingdb_server.load("test_coll", [{"id": "a"}, {"id": "b"}])
    client.delete(ids=["a"])
    client.upsert("test_coll", [{"id": "c", "x": 1}])
    client.post(UPDATE, {"collection_name": "test_coll", "data": [{"id": "b", "x": 2}]})
    assert set(vikingdb_server.records("test_coll")) == {"b", "c"}
    assert vikingdb_server.index_records("test_coll") == {"a": {}, "b": {}}
    in_index = result(client.fetch("test_coll", ["a", "c"], index="test_coll_index"))
    assert in_index == {"fetch": [{"id": "a", "fields": {}}], "ids_not_exist": ["c"]}
    assert result(random_search(client))["total_return_count"] == 2

    vikingdb_server.index_lag = 0
    assert vikingdb_server.index_records("test_coll") == {"b": {"x": 2}, "c": {"x": 1}}
    assert result(client.fetch("test_coll", ["a"], index="test_coll_index"))["ids_not_exist"] == ["a"]


def test_del_all_reaches_the_index_after_the_lag(vikingdb_server, client) -> None:
    vikingdb_server.index_lag = 60
    vikingdb_server.load("test_coll", [{"id": i} for i in string_ids(20)])
    assert client.delete(del_all=True).status_code == 200
    assert vikingdb_server.records("test_coll") == {}
    assert result(random_search(client, limit=50))["total_return_count"] == 20
    vikingdb_server.index_lag = 0
    assert result(random_search(client, limit=50)) == {
        "data": [],
        "total_return_count": 0,
        "filter_matched_count": 0,
    }


def test_writes_after_del_all_survive_it_in_the_index(vikingdb_server, client) -> None:
    vikingdb_server.index_lag = 60
    vikingdb_server.load("test_coll", [{"id": "old"}])
    client.delete(del_all=True)
    client.upsert("test_coll", [{"id": "new"}])
    vikingdb_server.load("test_coll", [{"id": "loaded"}])  # load: in the index at once
    assert set(vikingdb_server.index_records("test_coll")) == {"old", "loaded"}
    vikingdb_server.index_lag = 0
    assert set(vikingdb_server.index_records("test_coll")) == {"new", "loaded"}
    assert set(vikingdb_server.records("test_coll")) == {"new", "loaded"}


def test_load_is_not_undone_by_an_older_pending_delete(vikingdb_server, client) -> None:
    vikingdb_server.index_lag = 60
    vikingdb_server.load("test_coll", [{"id": "a", "v": 1}])
    client.delete(ids=["a"])
    vikingdb_server.load("test_coll", [{"id": "a", "v": 2}])
    vikingdb_server.index_lag = 0
    assert vikingdb_server.index_records("test_coll") == {"a": {"v": 2}}
    assert vikingdb_server.records("test_coll") == {"a": {"v": 2}}


def test_load_validates_rows(vikingdb_server) -> None:
    with pytest.raises(ValueError, match="primary key"):
        vikingdb_server.load("test_coll", [{"text": "no id"}])
    with pytest.raises(ValueError, match="int64"):
        vikingdb_server.load("test_coll_int", [{"id": "x"}])
    with pytest.raises(KeyError, match="no collection"):
        vikingdb_server.load("nope", [{"id": "x"}])
    assert vikingdb_server.records("test_coll") == {}
