"""The signature verifier: the contract's test vector, and every reason to accept or refuse."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests

from airflow_provider_vikingdb.local.auth import (
    RequestVerifier,
    canonical_host,
    canonical_path,
    canonical_query,
    compute_signature,
    parse_x_date,
)
from airflow_provider_vikingdb.local.errors import ApiError
from tests.local.vikingdb_signing_client import string_ids

# The test vector of /work/shared/vikingdb-api.md, section 4.
VECTOR_BODY = json.dumps({"collection_name": "test_coll", "ids": ["uid_001", "uid_002"]}).encode()
VECTOR_DATE = "20250101T000000Z"
VECTOR_HASH = "6fa7f3b9aaacc62dc1c54cdb548d0296037dbd3080a32e08c60db2d4b0bb000f"
VECTOR_HOST = "api-vikingdb.vikingdb.cn-beijing.volces.com"
VECTOR_SIG_NO_HOST = "7140e60f387b16613967f2a6c0428608011f3e0b8d33f99deed7ee67f83b58e0"
VECTOR_SIG_HOST = "c0db4c025f936641a19b76dc70c7b0cf4ebb98d16e8847995cd91867e41230a0"


def vector_headers(with_host: bool) -> dict[str, str]:
    signed = (
        "content-type;host;x-content-sha256;x-date" if with_host else "content-type;x-content-sha256;x-date"
    )
    signature = VECTOR_SIG_HOST if with_host else VECTOR_SIG_NO_HOST
    headers = {
        "accept": "application/json",
        "content-type": "application/json",
        "x-date": VECTOR_DATE,
        "x-content-sha256": VECTOR_HASH,
        "authorization": f"HMAC-SHA256 Credential=AKTEST/20250101/cn-beijing/vikingdb/request, "
        f"SignedHeaders={signed}, Signature={signature}",
    }
    if with_host:
        headers["host"] = VECTOR_HOST
    return headers


def test_vector_body_hash() -> None:
    assert hashlib.sha256(VECTOR_BODY).hexdigest() == VECTOR_HASH


@pytest.mark.parametrize(
    ("signed", "expected"),
    [
        (
            [
                ("content-type", "application/json"),
                ("x-content-sha256", VECTOR_HASH),
                ("x-date", VECTOR_DATE),
            ],
            VECTOR_SIG_NO_HOST,
        ),
        (
            [
                ("content-type", "application/json"),
                ("host", VECTOR_HOST),
                ("x-content-sha256", VECTOR_HASH),
                ("x-date", VECTOR_DATE),
            ],
            VECTOR_SIG_HOST,
        ),
    ],
    ids=["without-host", "with-host"],
)
def test_vector_signature(signed: list[tuple[str, str]], expected: str) -> None:
    got = compute_signature(
        "SKTEST", "cn-beijing", VECTOR_DATE, "POST", "/api/vikingdb/data/delete", "", signed, VECTOR_BODY
    )
    assert got == expected


@pytest.mark.parametrize("with_host", [False, True], ids=["without-host", "with-host"])
def test_vector_passes_the_verifier(with_host: bool) -> None:
    verifier = RequestVerifier({"AKTEST": "SKTEST"}, "cn-beijing")
    now = parse_x_date(VECTOR_DATE) + 60
    who = verifier.verify(
        "POST", "/api/vikingdb/data/delete", "", vector_headers(with_host), VECTOR_BODY, now=now
    )
    assert who == "AKTEST"


def test_vector_with_wrong_secret_fails_the_verifier() -> None:
    verifier = RequestVerifier({"AKTEST": "SKOTHER"}, "cn-beijing")
    with pytest.raises(ApiError) as caught:
        verifier.verify(
            "POST",
            "/api/vikingdb/data/delete",
            "",
            vector_headers(True),
            VECTOR_BODY,
            now=parse_x_date(VECTOR_DATE),
        )
    assert (caught.value.status, caught.value.code) == (401, "SignatureDoesNotMatch")


def test_vector_is_expired_on_todays_clock() -> None:
    verifier = RequestVerifier({"AKTEST": "SKTEST"}, "cn-beijing")
    with pytest.raises(ApiError) as caught:
        verifier.verify("POST", "/api/vikingdb/data/delete", "", vector_headers(False), VECTOR_BODY)
    assert caught.value.code == "RequestExpired"


def test_normalization_matches_volcengine() -> None:
    from volcengine.util.Util import Util

    assert canonical_path("/api/vikingdb/data/delete") == Util.norm_uri("/api/vikingdb/data/delete")
    # What arrives is percent-encoded; the client signed the decoded path.
    assert canonical_path("/a%20b/c~d") == Util.norm_uri("/a b/c~d")
    query = {"b": "x y", "a": "1/2", "c": "~-_."}
    assert canonical_query("b=x+y&a=1%2F2&c=~-_.") == Util.norm_query(query)
    assert canonical_query("") == Util.norm_query({})
    assert canonical_host("example.com:443") == "example.com"
    assert canonical_host("example.com:80") == "example.com"
    assert canonical_host("127.0.0.1:8765") == "127.0.0.1:8765"


# --- over HTTP, signed by volcengine's SignerV4 ---


def test_accepts_volcengine_signature_without_host(vikingdb_server, make_client) -> None:
    vikingdb_server.load("test_coll", [{"id": "a"}])
    response = make_client(vikingdb_server).delete(ids=["a"])
    assert response.status_code == 200, response.text
    assert response.json()["code"] == "Success"
    assert vikingdb_server.requests[-1].auth_ok is True
    assert "host;" not in vikingdb_server.requests[-1].headers["Authorization"]
    assert vikingdb_server.records("test_coll") == {}


@pytest.mark.parametrize("host", ["{server}", VECTOR_HOST, VECTOR_HOST + ":443"])
def test_accepts_volcengine_signature_with_host(vikingdb_server, make_client, host: str) -> None:
    vikingdb_server.load("test_coll", [{"id": "a"}])
    client = make_client(vikingdb_server, host_header=host.format(server=f"127.0.0.1:{vikingdb_server.port}"))
    response = client.delete(ids=["a"])
    assert response.status_code == 200, response.text
    assert "SignedHeaders=content-type;host;" in vikingdb_server.requests[-1].headers["Authorization"]
    assert vikingdb_server.records("test_coll") == {}


def test_accepts_signed_query_string(vikingdb_server, client) -> None:
    response = client.post(
        "/api/vikingdb/data/delete",
        {"collection_name": "test_coll", "ids": ["a"]},
        query={"b": "x y", "a": "1/2", "z": "~"},
    )
    assert response.status_code == 200, response.text
    assert vikingdb_server.requests[-1].query


def test_accepts_sts_session_token(vikingdb_server, make_client) -> None:
    response = make_client(vikingdb_server, session_token="STS-TOKEN-123").delete(ids=["a"])
    assert response.status_code == 200, response.text
    logged = vikingdb_server.requests[-1]
    assert logged.headers["X-Security-Token"] == "STS-TOKEN-123"
    assert "x-security-token" in logged.headers["Authorization"]


def assert_refused(server, response: requests.Response, code: str) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["code"] == code
    assert body["request_id"] == server.requests[-1].request_id
    assert server.requests[-1].auth_ok is False


def test_refuses_wrong_secret_key(vikingdb_server, make_client) -> None:
    vikingdb_server.load("test_coll", [{"id": "a"}])
    response = make_client(vikingdb_server, sk="WRONG").delete(ids=["a"])
    assert_refused(vikingdb_server, response, "SignatureDoesNotMatch")
    assert "a" in vikingdb_server.records("test_coll")


def test_refuses_tampered_body_with_its_hash_updated(vikingdb_server, client) -> None:
    vikingdb_server.load("test_coll", [{"id": "a"}, {"id": "b"}])
    prepared = client.prepare("/api/vikingdb/data/delete", {"collection_name": "test_coll", "ids": ["a"]})
    prepared.body = json.dumps({"collection_name": "test_coll", "ids": ["b"]}).encode()
    prepared.headers["X-Content-Sha256"] = hashlib.sha256(prepared.body).hexdigest()
    assert_refused(vikingdb_server, client.send(prepared), "SignatureDoesNotMatch")
    assert set(vikingdb_server.records("test_coll")) == {"a", "b"}


def test_refuses_tampered_body(vikingdb_server, client) -> None:
    vikingdb_server.load("test_coll", [{"id": "a"}, {"id": "b"}])
    prepared = client.prepare("/api/vikingdb/data/delete", {"collection_name": "test_coll", "ids": ["a"]})
    prepared.body = json.dumps({"collection_name": "test_coll", "ids": ["b"]}).encode()
    assert_refused(vikingdb_server, client.send(prepared), "ContentSha256Mismatch")
    assert set(vikingdb_server.records("test_coll")) == {"a", "b"}


def test_refuses_tampered_signed_header(vikingdb_server, client) -> None:
    prepared = client.prepare("/api/vikingdb/data/delete", {"collection_name": "test_coll", "ids": ["a"]})
    prepared.headers["Content-Type"] = "application/json; charset=utf-8"
    assert_refused(vikingdb_server, client.send(prepared), "SignatureDoesNotMatch")


def test_refuses_tampered_path(vikingdb_server, client) -> None:
    prepared = client.prepare("/api/vikingdb/data/fetch_in_collection", {"collection_name": "test_coll"})
    prepared.url = prepared.url.replace("fetch_in_collection", "delete")
    assert_refused(vikingdb_server, client.send(prepared), "SignatureDoesNotMatch")


def test_refuses_x_date_changed_after_signing(vikingdb_server, client) -> None:
    vikingdb_server.load("test_coll", [{"id": "a"}])
    prepared = client.prepare("/api/vikingdb/data/delete", {"collection_name": "test_coll", "ids": ["a"]})
    prepared.headers["X-Date"] = "20200101T000000Z"
    # The credential scope still carries the signing date.
    assert_refused(vikingdb_server, client.send(prepared), "InvalidCredentialScope")
    assert "a" in vikingdb_server.records("test_coll")


def test_refuses_x_date_more_than_15_minutes_off(vikingdb_server, client, monkeypatch) -> None:
    import datetime

    from volcengine.auth.SignerV4 import SignerV4

    vikingdb_server.load("test_coll", [{"id": "a"}])
    sixteen_minutes_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=16)
    monkeypatch.setattr(
        SignerV4,
        "get_current_format_date",
        staticmethod(lambda: sixteen_minutes_ago.strftime("%Y%m%dT%H%M%SZ")),
    )
    assert_refused(vikingdb_server, client.delete(ids=["a"]), "RequestExpired")
    assert "a" in vikingdb_server.records("test_coll")


def test_accepts_x_date_within_15_minutes(vikingdb_server, client, monkeypatch) -> None:
    import datetime

    from volcengine.auth.SignerV4 import SignerV4

    ten_minutes_ahead = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=10)
    monkeypatch.setattr(
        SignerV4,
        "get_current_format_date",
        staticmethod(lambda: ten_minutes_ahead.strftime("%Y%m%dT%H%M%SZ")),
    )
    assert client.delete(ids=["a"]).status_code == 200


def test_refuses_missing_authorization(vikingdb_server, client) -> None:
    vikingdb_server.load("test_coll", [{"id": "a"}])
    prepared = client.prepare("/api/vikingdb/data/delete", {"collection_name": "test_coll", "ids": ["a"]})
    del prepared.headers["Authorization"]
    assert_refused(vikingdb_server, client.send(prepared), "MissingAuthenticationToken")
    assert "a" in vikingdb_server.records("test_coll")


@pytest.mark.parametrize(
    "authorization",
    [
        "AWS4-HMAC-SHA256 Credential=AK/20250101/cn-beijing/vikingdb/request",
        "HMAC-SHA256 Credential=AK/20250101/cn-beijing/vikingdb/request, SignedHeaders=x-date",
        "HMAC-SHA256 Credential=AK/cn-beijing, SignedHeaders=x-date, Signature=" + "0" * 64,
        "HMAC-SHA256 Credential=AK/20250101/cn-beijing/vikingdb/request, SignedHeaders=x-date, Signature=xyz",
        "HMAC-SHA256 garbage",
    ],
)
def test_refuses_malformed_authorization(vikingdb_server, client, authorization: str) -> None:
    prepared = client.prepare("/api/vikingdb/data/delete", {"collection_name": "test_coll", "ids": ["a"]})
    prepared.headers["Authorization"] = authorization
    assert_refused(vikingdb_server, client.send(prepared), "InvalidAuthorization")


def test_refuses_unknown_access_key(vikingdb_server, make_client) -> None:
    response = make_client(vikingdb_server, ak="SOMEONE-ELSE").delete(ids=["a"])
    assert_refused(vikingdb_server, response, "InvalidAccessKey")


@pytest.mark.parametrize("region", ["cn-shanghai", "cn-north-1"])
def test_refuses_other_region_in_scope(vikingdb_server, make_client, region: str) -> None:
    response = make_client(vikingdb_server, region=region).delete(ids=["a"])
    assert_refused(vikingdb_server, response, "InvalidCredentialScope")
    assert "cn-beijing" in response.json()["message"]


def test_refuses_v1_service_name_in_scope(vikingdb_server, client) -> None:
    prepared = client.prepare("/api/vikingdb/data/delete", {"collection_name": "test_coll", "ids": ["a"]})
    prepared.headers["Authorization"] = prepared.headers["Authorization"].replace("/vikingdb/", "/air/")
    assert_refused(vikingdb_server, client.send(prepared), "InvalidCredentialScope")


def test_refuses_unsigned_security_token(vikingdb_server, client) -> None:
    prepared = client.prepare("/api/vikingdb/data/delete", {"collection_name": "test_coll", "ids": ["a"]})
    prepared.headers["X-Security-Token"] = "added-after-signing"
    assert_refused(vikingdb_server, client.send(prepared), "SecurityTokenNotSigned")


def test_refuses_signed_header_that_was_not_sent(vikingdb_server, make_client) -> None:
    client = make_client(vikingdb_server, session_token="tok")
    prepared = client.prepare("/api/vikingdb/data/delete", {"collection_name": "test_coll", "ids": ["a"]})
    del prepared.headers["X-Security-Token"]
    assert_refused(vikingdb_server, client.send(prepared), "InvalidAuthorization")


def test_other_region_server_accepts_its_region(vikingdb_server_factory, make_client) -> None:
    server = vikingdb_server_factory(region="ap-southeast-1", ak="MYAK", sk="MYSK")
    assert make_client(server).delete(ids=["a"]).status_code == 200
    assert make_client(server, region="cn-beijing").delete(ids=["a"]).status_code == 401


# --- Bearer API keys ---


def bearer_delete(server, key: str) -> requests.Response:
    return requests.post(
        server.url + "/api/vikingdb/data/delete",
        json={"collection_name": "test_coll", "ids": ["a"]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def test_accepts_good_api_key(vikingdb_server_factory) -> None:
    server = vikingdb_server_factory(api_key="secret-key")
    server.load("test_coll", [{"id": "a"}])
    response = bearer_delete(server, "secret-key")
    assert response.status_code == 200, response.text
    assert server.requests[-1].auth_ok is True
    assert server.records("test_coll") == {}


def test_refuses_bad_api_key(vikingdb_server_factory) -> None:
    server = vikingdb_server_factory(api_key="secret-key")
    server.load("test_coll", [{"id": "a"}])
    assert_refused(server, bearer_delete(server, "not-the-key"), "InvalidApiKey")
    assert "a" in server.records("test_coll")


def test_refuses_api_key_when_none_is_configured(vikingdb_server) -> None:
    assert_refused(vikingdb_server, bearer_delete(vikingdb_server, "anything"), "InvalidApiKey")


def test_signatures_still_work_when_api_key_configured(vikingdb_server_factory, make_client) -> None:
    server = vikingdb_server_factory(api_key="secret-key")
    assert make_client(server).delete(ids=string_ids(3)).status_code == 200
