"""The official vikingdb-python-sdk works against the local server unchanged."""

from __future__ import annotations

import pytest

vikingdb = pytest.importorskip("vikingdb", reason="vikingdb-python-sdk is in the dev extra")


def sdk_client(server, **kwargs):
    # host is host:port, the scheme is http; region and service "vikingdb" go into the signature.
    return vikingdb.VikingDB(
        host=f"127.0.0.1:{server.port}",
        region=server.region,
        auth=vikingdb.IAM(ak=server.ak, sk=server.sk),
        scheme="http",
        timeout=10,
        **kwargs,
    )


def test_sdk_delete(vikingdb_server) -> None:
    vikingdb_server.load("test_coll", [{"id": "a"}, {"id": "b"}, {"id": "c"}])
    collection = sdk_client(vikingdb_server).collection(collection_name="test_coll")
    response = collection.delete({"ids": ["a", "b"]})
    assert response.code == "Success"
    assert response.request_id == vikingdb_server.requests[-1].request_id
    assert vikingdb_server.records("test_coll") == {"c": {}}
    # the SDK pinged first, unsigned
    assert [r.path for r in vikingdb_server.requests] == ["/api/vikingdb/Ping", "/api/vikingdb/data/delete"]
    assert vikingdb_server.requests[-1].auth_ok is True


def test_sdk_delete_by_resource_id_int64(vikingdb_server) -> None:
    vikingdb_server.load("test_coll_int", [{"id": 1}, {"id": 2}])
    collection = sdk_client(vikingdb_server).collection(
        resource_id=vikingdb_server.resource_id("test_coll_int")
    )
    assert collection.delete({"ids": [1]}).code == "Success"
    assert vikingdb_server.records("test_coll_int") == {2: {}}


def test_sdk_upsert_fetch_and_index(vikingdb_server) -> None:
    client = sdk_client(vikingdb_server)
    collection = client.collection(collection_name="test_coll")
    collection.upsert({"data": [{"id": "u1", "text": "héllo"}]})
    fetched = collection.fetch({"ids": ["u1", "nope"]})
    assert [(item.id, item.fields) for item in fetched.result.items] == [("u1", {"text": "héllo"})]
    assert fetched.result.ids_not_exist == ["nope"]


def test_sdk_with_sts_token(vikingdb_server) -> None:
    client = sdk_client(vikingdb_server, sts_token="STS")
    assert client.collection(collection_name="test_coll").delete({"ids": ["x"]}).code == "Success"
    assert vikingdb_server.requests[-1].headers.get("X-Security-Token") == "STS"


def test_sdk_sees_errors(vikingdb_server) -> None:
    from vikingdb import RequestOptions

    collection = sdk_client(vikingdb_server).collection(collection_name="no_such")
    with pytest.raises(Exception) as caught:
        collection.delete({"ids": ["a"]}, request_options=RequestOptions(max_attempts=1))
    assert caught.value.code == "NotFound.VikingdbCollection"
    assert caught.value.status_code == 404


def test_sdk_with_wrong_secret_is_refused(vikingdb_server) -> None:
    from vikingdb import RequestOptions

    client = vikingdb.VikingDB(
        host=f"127.0.0.1:{vikingdb_server.port}",
        region="cn-beijing",
        auth=vikingdb.IAM(ak="AK", sk="WRONG"),
        scheme="http",
    )
    with pytest.raises(Exception) as caught:
        client.collection(collection_name="test_coll").delete(
            {"ids": ["a"]}, request_options=RequestOptions(max_attempts=1)
        )
    assert caught.value.code == "SignatureDoesNotMatch"
