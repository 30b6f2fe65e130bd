"""POST /api/vikingdb/data/delete: every validation rule of the contract, and that an
invalid request applies nothing."""

from __future__ import annotations

import pytest

from tests.local.vikingdb_signing_client import string_ids

DELETE = "/api/vikingdb/data/delete"
INT64_MAX = 2**63 - 1


@pytest.fixture
def loaded(vikingdb_server):
    vikingdb_server.load("test_coll", [{"id": i, "text": f"text of {i}"} for i in string_ids(150)])
    vikingdb_server.load("test_coll_int", [{"id": n, "n": n} for n in range(1, 151)])
    return vikingdb_server


def snapshot(server) -> tuple[dict, dict]:
    return server.records("test_coll"), server.records("test_coll_int")


def assert_error(server, response, status: int, code: str, before) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert body["result"] is None
    assert body["request_id"] and body["request_id"] == server.requests[-1].request_id
    assert response.headers["X-Tt-Logid"] == body["request_id"]
    assert snapshot(server) == before, "an invalid request must apply nothing"
    assert server.index_records("test_coll") == before[0]
    return body


def test_deletes_ids(loaded, client) -> None:
    response = client.delete(ids=["uid_00001", "uid_00002", "uid_00005"])
    assert response.status_code == 200
    assert response.json() == {
        "code": "Success",
        "message": "The API call was executed successfully.",
        "request_id": loaded.requests[-1].request_id,
        "result": None,
    }
    remaining = loaded.records("test_coll")
    assert len(remaining) == 147
    assert not {"uid_00001", "uid_00002", "uid_00005"} & set(remaining)
    assert loaded.requests[-1].ids_count == 3


def test_deletes_100_ids(loaded, client) -> None:
    assert client.delete(ids=string_ids(100)).status_code == 200
    assert sorted(loaded.records("test_coll")) == string_ids(150)[100:]


def test_deletes_int64_ids(loaded, client) -> None:
    response = client.delete("test_coll_int", ids=[1, 2, INT64_MAX, -5])
    assert response.status_code == 200, response.text
    assert 1 not in loaded.records("test_coll_int")
    assert len(loaded.records("test_coll_int")) == 148


def test_deletes_by_resource_id(loaded, client) -> None:
    assert loaded.resource_id("test_coll") == "vdb-test_coll"
    response = client.post(DELETE, {"resource_id": "vdb-test_coll", "ids": ["uid_00000"]})
    assert response.status_code == 200, response.text
    assert "uid_00000" not in loaded.records("test_coll")


def test_deleting_missing_ids_succeeds(loaded, client) -> None:
    before = snapshot(loaded)
    response = client.delete(ids=["never-existed", "uid_99999"])
    assert response.status_code == 200
    assert snapshot(loaded) == before
    # and again: idempotent
    client.delete(ids=["uid_00001"])
    assert client.delete(ids=["uid_00001"]).status_code == 200


def test_ignores_unknown_extra_fields(loaded, client) -> None:
    response = client.post(
        DELETE,
        {"collection_name": "test_coll", "ids": ["uid_00001"], "project_name": "default", "async": True},
    )
    assert response.status_code == 200, response.text


def test_del_all(loaded, client) -> None:
    response = client.delete(del_all=True)
    assert response.status_code == 200, response.text
    assert loaded.records("test_coll") == {}
    assert len(loaded.records("test_coll_int")) == 150, "del_all touches one collection only"


def test_del_all_false_with_ids_deletes_the_ids(loaded, client) -> None:
    assert client.delete(ids=["uid_00001"], del_all=False).status_code == 200
    assert len(loaded.records("test_coll")) == 149


# --- each rule: status, code, nothing applied ---


def test_both_collection_name_and_resource_id(loaded, client) -> None:
    before = snapshot(loaded)
    response = client.post(
        DELETE, {"collection_name": "test_coll", "resource_id": "vdb-test_coll", "ids": ["uid_00001"]}
    )
    assert_error(loaded, response, 400, "InvalidParameter", before)


def test_neither_collection_name_nor_resource_id(loaded, client) -> None:
    before = snapshot(loaded)
    response = client.post(DELETE, {"ids": ["uid_00001"]})
    assert_error(loaded, response, 400, "MissingParameter", before)


@pytest.mark.parametrize("name", [123, "", ["test_coll"]])
def test_collection_name_not_a_string(loaded, client, name) -> None:
    before = snapshot(loaded)
    response = client.post(DELETE, {"collection_name": name, "ids": ["uid_00001"]})
    assert_error(loaded, response, 400, "InvalidParameter", before)


def test_empty_ids(loaded, client) -> None:
    before = snapshot(loaded)
    assert_error(loaded, client.delete(ids=[]), 400, "InvalidParameter", before)


def test_101_ids(loaded, client) -> None:
    before = snapshot(loaded)
    body = assert_error(loaded, client.delete(ids=string_ids(101)), 400, "InvalidParameter", before)
    assert "100" in body["message"]


def test_ids_not_a_list(loaded, client) -> None:
    before = snapshot(loaded)
    assert_error(loaded, client.delete(ids="uid_00001"), 400, "InvalidParameter", before)


@pytest.mark.parametrize(
    "bad", [7, None, 1.5, {"id": 1}, ""], ids=["int", "null", "float", "object", "empty"]
)
def test_string_collection_refuses_non_string_id(loaded, client, bad) -> None:
    before = snapshot(loaded)
    response = client.delete(ids=["uid_00001", bad])
    assert_error(loaded, response, 400, "InvalidParameter", before)


@pytest.mark.parametrize(
    "bad",
    ["1", True, False, 1.0, 2**63, -(2**63) - 1, None],
    ids=["string", "true", "false", "float", "above-int64", "below-int64", "null"],
)
def test_int64_collection_refuses_non_int64_id(loaded, client, bad) -> None:
    before = snapshot(loaded)
    response = client.delete("test_coll_int", ids=[1, bad])
    assert_error(loaded, response, 400, "InvalidParameter", before)


def test_int64_range_edges_are_accepted(loaded, client) -> None:
    assert client.delete("test_coll_int", ids=[INT64_MAX, -(2**63)]).status_code == 200


def test_ids_with_del_all(loaded, client) -> None:
    before = snapshot(loaded)
    response = client.delete(ids=["uid_00001"], del_all=True)
    assert_error(loaded, response, 400, "InvalidParameter", before)


def test_neither_ids_nor_del_all(loaded, client) -> None:
    before = snapshot(loaded)
    assert_error(loaded, client.delete(), 400, "MissingParameter", before)
    assert_error(loaded, client.delete(del_all=False), 400, "MissingParameter", before)


def test_del_all_not_a_bool(loaded, client) -> None:
    before = snapshot(loaded)
    assert_error(loaded, client.delete(del_all="true"), 400, "InvalidParameter", before)


def test_unknown_collection(loaded, client) -> None:
    before = snapshot(loaded)
    body = assert_error(
        loaded, client.delete("no_such_coll", ids=["uid_00001"]), 404, "NotFound.VikingdbCollection", before
    )
    assert body["message"] == "The specified collection 'no_such_coll' of VikingDB does not exist."


def test_unknown_resource_id(loaded, client) -> None:
    before = snapshot(loaded)
    response = client.post(DELETE, {"resource_id": "vdb-nope", "ids": ["uid_00001"]})
    body = assert_error(loaded, response, 404, "NotFound.VikingdbCollection", before)
    assert "vdb-nope" in body["message"]


@pytest.mark.parametrize("raw", ["not json", '{"collection_name": "test_coll", "ids": [', ""])
def test_body_not_json(loaded, client, raw) -> None:
    before = snapshot(loaded)
    response = client.send(client.prepare(DELETE, raw=raw))
    assert_error(loaded, response, 400, "InvalidParameter", before)
    assert loaded.requests[-1].body is None
    assert loaded.requests[-1].auth_ok is True


def test_body_json_but_not_an_object(loaded, client) -> None:
    before = snapshot(loaded)
    response = client.post(DELETE, [{"collection_name": "test_coll", "ids": ["uid_00001"]}])
    assert_error(loaded, response, 400, "InvalidParameter", before)


def test_one_bad_id_in_100_fails_the_whole_request(loaded, client) -> None:
    before = snapshot(loaded)
    ids = [*string_ids(99), 12345]
    assert_error(loaded, client.delete(ids=ids), 400, "InvalidParameter", before)
