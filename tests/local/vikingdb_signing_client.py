"""A tiny client for the local server tests: requests + volcengine's own SignerV4.

Signing with the volcengine package (not with our verifier's functions) is the point:
the server must accept exactly what real clients send.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import requests
from volcengine.auth.SignerV4 import SignerV4
from volcengine.base.Request import Request
from volcengine.Credentials import Credentials


@dataclass
class Prepared:
    """A signed request not yet sent; tests tamper with it to check rejections."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass
class SigningClient:
    url: str
    ak: str = "AK"
    sk: str = "SK"
    region: str = "cn-beijing"
    session_token: str = ""
    host_header: str | None = None  # sign (and send) this Host header; None: sign without Host
    session: requests.Session = field(default_factory=requests.Session)
    timeout: float = 10.0

    def prepare(
        self,
        path: str,
        body: Any = None,
        *,
        method: str = "POST",
        query: dict[str, str] | None = None,
        raw: str | None = None,
    ) -> Prepared:
        text = raw if raw is not None else ("" if body is None else json.dumps(body))
        request = Request()
        request.set_method(method)
        request.set_path(path)
        request.set_query(dict(query or {}))
        headers = {"Accept": "application/json"}
        if method != "GET":
            headers["Content-Type"] = "application/json"
        if self.host_header is not None:
            headers["Host"] = self.host_header
        request.set_headers(headers)
        request.set_body(text)
        SignerV4.sign(request, Credentials(self.ak, self.sk, "vikingdb", self.region, self.session_token))
        url = self.url + path
        if query:
            url += "?" + requests.models.RequestEncodingMixin._encode_params(query)
        return Prepared(method, url, dict(request.headers), text.encode("utf-8"))

    def send(self, prepared: Prepared) -> requests.Response:
        return self.session.request(
            prepared.method, prepared.url, headers=prepared.headers, data=prepared.body, timeout=self.timeout
        )

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.send(self.prepare(path, body, **kwargs))

    def delete(self, collection: str = "test_coll", **body: Any) -> requests.Response:
        return self.post("/api/vikingdb/data/delete", {"collection_name": collection, **body})

    def upsert(self, collection: str, rows: list[dict]) -> requests.Response:
        return self.post("/api/vikingdb/data/upsert", {"collection_name": collection, "data": rows})

    def fetch(self, collection: str, ids: list, index: str | None = None) -> requests.Response:
        if index is None:
            return self.post(
                "/api/vikingdb/data/fetch_in_collection", {"collection_name": collection, "ids": ids}
            )
        return self.post(
            "/api/vikingdb/data/fetch_in_index",
            {"collection_name": collection, "index_name": index, "ids": ids},
        )

    def close(self) -> None:
        self.session.close()


def string_ids(count: int, prefix: str = "uid_") -> list[str]:
    """``count`` distinct string primary keys: uid_00000, uid_00001, ..."""
    return [f"{prefix}{n:05d}" for n in range(count)]


def ok_result(response: requests.Response) -> Any:
    """The ``result`` of a 200 ``Success`` answer (fails the test with the body otherwise)."""
    assert response.status_code == 200, response.text
    assert response.json()["code"] == "Success", response.text
    return response.json()["result"]


def error_of(response: requests.Response, status: int = 400) -> tuple[str, str]:
    """(code, message) of an error answer with HTTP ``status``."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["result"] is None
    return body["code"], body["message"]
