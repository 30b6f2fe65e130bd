"""One request's life, without I/O: body bytes, signature, envelope, error, retry decision.

The hook's sync path (``requests``) and async path (``httpx``) both send through
these functions, so a status, a cut connection or a TLS failure means the same
thing whichever client met it. ``requests``, ``httpx`` and ``volcengine`` are
imported inside the functions that need them, never at import time.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from urllib.request import (  # type: ignore[attr-defined]  # typeshed omits proxy_bypass_environment
    getproxies_environment,
    proxy_bypass_environment,
)

from airflow_provider_vikingdb.connection import VikingDBConnectionConfig
from airflow_provider_vikingdb.exceptions import (
    VikingDBAuthError,
    VikingDBConfigError,
    VikingDBConnectionError,
    VikingDBError,
    VikingDBThrottledError,
    non_envelope_answer_lost,
)

API = "/api/vikingdb"
DELETE_PATH = f"{API}/data/delete"
UPSERT_PATH = f"{API}/data/upsert"
UPDATE_PATH = f"{API}/data/update"
FETCH_IN_COLLECTION_PATH = f"{API}/data/fetch_in_collection"
FETCH_IN_INDEX_PATH = f"{API}/data/fetch_in_index"
SEARCH_RANDOM_PATH = f"{API}/data/search/random"
SEARCH_SCALAR_PATH = f"{API}/data/search/scalar"
AGG_PATH = f"{API}/data/agg"
PING_PATH = f"{API}/Ping"

SERVICE = "vikingdb"
#: the request id header of Volcengine's gateway, for answers without an envelope
REQUEST_ID_HEADER = "X-Tt-Logid"
#: a throttled request is retried this many times before the batch counts as failed
DEFAULT_THROTTLE_RETRIES = 60
BACKOFF_BASE = 0.5
BACKOFF_CAP = 20.0
#: how much of a body that is not an envelope an error quotes
QUOTED_BODY = 200


def full_path(path: str) -> str:
    return path if path.startswith("/") else f"{API}/{path}"


def encode_body(body: Mapping[str, Any] | None) -> bytes:
    """Compact JSON: the bytes that are hashed are the bytes that are sent."""
    if body is None:
        return b""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------- signing


def sign_headers(
    *,
    method: str,
    path: str,
    body: bytes,
    headers: Mapping[str, str],
    access_key: str,
    secret_key: str,
    region: str,
    session_token: str | None = None,
    query: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Headers for one attempt, signed with volcengine's SignerV4 (service ``vikingdb``).

    ``body`` must be the exact bytes that will be sent: their SHA-256 is signed.
    Sign every attempt anew: the signature carries the current X-Date.
    """
    from volcengine.auth.SignerV4 import SignerV4
    from volcengine.base.Request import Request
    from volcengine.Credentials import Credentials

    request = Request()
    request.set_method(method)
    request.set_path(path)
    request.set_headers(dict(headers))
    request.set_query(dict(query or {}))
    request.set_body(body)
    SignerV4.sign(request, Credentials(access_key, secret_key, SERVICE, region, session_token or ""))
    return dict(request.headers)


def request_headers(config: VikingDBConnectionConfig, method: str, path: str, body: bytes) -> dict[str, str]:
    """The headers of one attempt: a Bearer API key, or an AK/SK signature of exactly ``body``."""
    headers = {"Accept": "application/json", "Host": config.host_header}
    if method != "GET":
        headers["Content-Type"] = "application/json"
    if config.api_key:
        headers["Authorization"] = f"Bearer {config.api_key}"
        if config.session_token:
            headers["X-Security-Token"] = config.session_token
        return headers
    return sign_headers(
        method=method,
        path=path,
        body=body,
        headers=headers,
        access_key=config.access_key or "",
        secret_key=config.secret_key or "",
        region=config.region,
        session_token=config.session_token,
    )


# --------------------------------------------------------------------------- answers


@dataclass
class Answer:
    """An HTTP answer as either client saw it: what the envelope reading needs, nothing more."""

    status: int
    body: bytes
    headers: Mapping[str, str]
    reason: str = ""

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        if value is None:  # a plain dict: look again without case
            lower = name.lower()
            value = next((v for k, v in self.headers.items() if k.lower() == lower), None)
        return value


def read_envelope(
    answer: Answer, path: str, secrets: Iterable[str] = ()
) -> tuple[dict[str, Any], VikingDBError | None]:
    """The envelope of a 200/Success answer, or the error any other answer means.

    Never assumes the body is JSON: a proxy may answer HTML or nothing. What an error
    quotes of such a body has the connection's secrets and auth headers removed.
    """
    status = answer.status
    try:
        data = json.loads(answer.body) if answer.body else None
    except ValueError:
        data = None
    request_id = answer.header(REQUEST_ID_HEADER)
    # A 200 is an envelope only with a code: ``{}`` from a proxy or a mangled body is not the
    # service's word either; nor is a gateway's JSON 5xx (``{"message": "Endpoint request
    # timed out"}``). Other statuses say enough by themselves.
    if not isinstance(data, dict) or (non_envelope_answer_lost(status) and "code" not in data):
        text = scrub(answer.body.decode("utf-8", "replace"), secrets)
        text = text.strip().replace("\n", " ").replace("\r", " ")
        message = f"answer is not a JSON envelope: {shorten(text, QUOTED_BODY)!r}" if text else "empty answer"
        if 400 <= status < 500 and status != 429:
            # Refused by something that does not speak VikingDB's envelope: a proxy, another service.
            message += (
                "; the host did not answer like a VikingDB data-plane endpoint: check the connection's "
                "host, port and scheme"
            )
        # A 200 that is not an envelope is a cut or mangled answer, and a gateway's 5xx page
        # stands for an answer it did not get or did not pass on: not the service's word, and the
        # request may have been applied. Worth another attempt either way (every data-plane call
        # is idempotent).
        error_class: type[VikingDBError] = error_class_for(status)
        if non_envelope_answer_lost(status):
            error_class = VikingDBConnectionError
            if status != 200:
                message += (
                    f"; a gateway answered {status} in the service's place: the request may have "
                    "reached the service and been applied"
                )
        return {}, error_class(
            message, code="BadResponse", http_status=status, request_id=request_id, path=path
        )
    if status == 200 and data.get("code") == "Success":
        return data, None
    code = str(data.get("code") or ("BadResponse" if status == 200 else f"HTTP{status}"))
    message = scrub(str(data.get("message") or answer.reason or ""), secrets)
    request_id = str(data.get("request_id") or request_id or "") or None
    error_class = error_class_for(status)
    if error_class is VikingDBAuthError:
        said = message.rstrip().rstrip(".")
        if "token" in f"{code} {said}".lower():
            fix = (
                "Refresh the STS token in the connection's extra 'session_token' (it is short-lived), "
                "or check the Access Key ID / Secret Access Key issued with it"
            )
        else:
            fix = (
                "Check the connection's Access Key ID / Secret Access Key (or api_key), its region, "
                "and the worker's clock"
            )
        message = f"the credentials were rejected: {said}. {fix}."
    return data, error_class(message, code=code, request_id=request_id, http_status=status, path=path)


def error_class_for(status: int) -> type[VikingDBError]:
    if status in (401, 403):
        return VikingDBAuthError
    if status == 429:
        return VikingDBThrottledError
    return VikingDBError


# A header's value runs to the end of its line (an HMAC one holds commas); in a page, to the next tag.
#: an auth header's name and value as a page echoes it: ``Authorization: ...`` (HTML, plain text),
#: ``authorization=...``, or JSON's ``"Authorization": "..."`` (a quote after the name)
_AUTH_HEADER = re.compile(r"(?i)\b(authorization|x-security-token)([\"']?\s*[:=]\s*[\"']?)[^\r\n<>\"']+")


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` without any of ``secrets`` and without the values of auth headers it quotes.

    A secret is also removed as JSON may write it (``/`` as ``\\/``: base64 SKs and STS tokens
    have slashes), since a gateway's JSON page is quoted as it came.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***").replace(secret.replace("/", "\\/"), "***")
    return _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)


# --------------------------------------------------------------------------- transport faults

#: what a failure below HTTP means: a timeout and a cut connection may pass, a TLS failure will not
TIMEOUT, CUT, UNREACHABLE, TLS, INTERRUPTED = "timeout", "cut", "unreachable", "tls", "interrupted"


def transport_error(kind: str, detail: str, config: VikingDBConnectionConfig, path: str) -> VikingDBError:
    """The error for a failure below HTTP, the same message for the sync and the async client."""
    detail = scrub(detail, config.secrets)
    if kind == TIMEOUT:
        return VikingDBConnectionError(
            f"no complete answer within {config.timeout:g}s ({detail})", code="Timeout", path=path
        )
    if kind == CUT:
        return VikingDBConnectionError(
            f"the connection to {config.base_url} broke before the answer was complete ({detail})",
            code="IncompleteAnswer",
            path=path,
        )
    if kind == TLS:
        # The clients word a TLS failure differently; the SSL reason is the same for both.
        reason = re.search(r"\[SSL[^\]]*\][^'\"()]*", detail) or re.search(
            r"certificate verify failed[^'\"()]*", detail
        )
        if reason:
            detail = reason.group(0).strip()
        hint = ""
        if "WRONG_VERSION_NUMBER" in detail or "record layer failure" in detail:
            hint = (
                " The server does not speak TLS: if it is plain http (the local server, "
                "a private link), set the connection's extra 'scheme' to 'http' (or give the "
                "host as an http:// URL)."
            )
        # Not transient: retrying a TLS failure only delays the same error.
        return VikingDBError(
            f"TLS with {config.base_url} failed: {detail}.{hint}", code="SSLError", path=path
        )
    return VikingDBConnectionError(
        f"could not reach {config.base_url}: {detail}", code="ConnectionError", path=path
    )


def classify_requests_error(exc: BaseException) -> tuple[str, str]:
    """``(kind, detail)`` for an exception met sending with ``requests``."""
    import requests
    from urllib3.exceptions import ConnectTimeoutError

    if isinstance(exc, requests.exceptions.SSLError):
        return TLS, first_line(exc)
    # No connection, so nothing was sent: a name that does not resolve, a refused or
    # unroutable address, a connect timeout (urllib3's NewConnectionError, and its
    # NameResolutionError, derive from ConnectTimeoutError), a proxy that would not connect.
    # A gaierror or a refused connection can only happen while connecting, whatever wraps it.
    connecting = (ConnectTimeoutError, socket.gaierror, ConnectionRefusedError)
    if isinstance(exc, (requests.exceptions.ConnectTimeout, requests.exceptions.ProxyError)) or (
        isinstance(exc, requests.ConnectionError) and any(isinstance(c, connecting) for c in causes(exc))
    ):
        return UNREACHABLE, unreachable_reason(exc)
    if isinstance(exc, requests.Timeout):
        return TIMEOUT, type(exc).__name__
    # Anything else (reset, headers or body cut short, "RemoteDisconnected") broke an
    # exchange under way: the request may have been sent, and applied.
    return CUT, first_line(exc)


def classify_httpx_error(exc: BaseException) -> tuple[str, str]:
    """``(kind, detail)`` for an exception met sending with ``httpx``."""
    import ssl

    import httpx

    detail = first_line(exc)
    if any(isinstance(cause, ssl.SSLError) for cause in causes(exc)):
        return TLS, detail
    if "SSL" in detail and "CERTIFICATE" in detail.upper():
        return TLS, detail
    # ConnectError and ConnectTimeout: no connection (or no TLS session), so nothing was sent.
    if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError)):
        return UNREACHABLE, unreachable_reason(exc)
    if isinstance(exc, httpx.TimeoutException):
        return TIMEOUT, type(exc).__name__
    return CUT, detail


def causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and what lies under it: causes, contexts, and the errors the clients wrap.

    ``requests`` wraps urllib3's ``MaxRetryError`` as its first argument, whose ``reason``
    is the error met connecting (which urllib3 1.x raises without a cause).
    """
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        current = todo.pop(0)
        if any(current is known for known in seen):
            continue
        seen.append(current)
        under = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        todo.extend(e for e in under if isinstance(e, BaseException))
    return seen


def unreachable_reason(exc: BaseException) -> str:
    """Why no connection was made, in the same words for both clients."""
    found = causes(exc)
    for cause in found:
        if isinstance(cause, socket.gaierror):
            return f"the host name does not resolve ({cause.strerror or cause})"
    if any(_is_connect_timeout(cause) for cause in found):
        return "no connection within the connect timeout"
    for cause in found:
        # "Connection refused", "No route to host", "Network is unreachable", ...
        if isinstance(cause, OSError) and cause.errno and cause.errno > 0:
            return os.strerror(cause.errno)
    return first_line(exc)


def _is_connect_timeout(exc: BaseException) -> bool:
    # By name, so that neither client is imported here: requests' ConnectTimeout, httpx's
    # and httpcore's ConnectTimeout, and urllib3's ConnectTimeoutError unless it is one of
    # the connection errors urllib3 derives from it.
    return type(exc).__name__ in ("ConnectTimeout", "ConnectTimeoutError")


def first_line(exc: BaseException) -> str:
    text = str(exc)
    line = shorten(text.splitlines()[0]) if text else ""
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def shorten(text: str, limit: int = 300) -> str:
    """``text``, or its start cut at a word boundary and ended with "…" when it is longer than ``limit``."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 2]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:([{") + " …"


# --------------------------------------------------------------------------- retries


def retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff
    return min(max(seconds, 0.0), 60.0) if seconds == seconds else None


def full_jitter(attempt: int, cap: float = BACKOFF_CAP) -> float:
    return random.uniform(0, min(cap, BACKOFF_BASE * 2 ** (attempt - 1)))


@dataclass
class RetryState:
    """The retry budget of one call: transient failures and throttles are counted apart.

    ``next_delay`` says how long to wait before the next attempt, or None to give up.
    Throttling has its own, larger budget: it is the service pacing us, not failing.
    """

    max_retries: int
    throttle_retries: int = DEFAULT_THROTTLE_RETRIES
    paced: bool = False  # a rate limiter holds each attempt until the quota covers it
    failures: int = 0
    throttles: int = 0

    def next_delay(self, error: VikingDBError, retry_after_s: float | None) -> float | None:
        if isinstance(error, VikingDBThrottledError):
            self.throttles += 1
            if self.throttles > self.throttle_retries:
                return None
            if retry_after_s is not None:
                return retry_after_s
            return 0.0 if self.paced else full_jitter(self.throttles, cap=2.0)
        if not error.retryable or self.failures >= self.max_retries:
            return None
        self.failures += 1
        return retry_after_s if retry_after_s is not None else full_jitter(self.failures)

    def describe(self, error: VikingDBError) -> str:
        if isinstance(error, VikingDBThrottledError):
            return f"throttle retry {self.throttles}/{self.throttle_retries}"
        return f"retry {self.failures}/{self.max_retries}"


# --------------------------------------------------------------------------- client settings


def agg_total(result: Mapping[str, Any]) -> int:
    """The total of an ``agg`` count answer: ``result.agg.__TOTAL__`` (an SDK page says ``_total``)."""
    agg = result.get("agg")
    if isinstance(agg, Mapping):
        for key in ("__TOTAL__", "_total"):
            if key in agg:
                return int(agg[key])
    raise VikingDBError(shorten(f"agg count answer has no total: {dict(result)!r}"), code="BadResponse")


def ca_verify(cfg: VikingDBConnectionConfig) -> bool | str:
    """The connection's ``verify``; with the default, a CA bundle named by the environment."""
    if cfg.verify is not True:
        where = "the connection's extra 'verify'"
        verify = cfg.verify
    else:
        name = next((n for n in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if os.environ.get(n)), None)
        if name is None:
            return True
        where, verify = f"the environment variable {name}", os.environ[name]
    if isinstance(verify, str) and not os.path.exists(verify):
        raise VikingDBConfigError(f"{where} names a CA bundle that does not exist: {verify!r}")
    return verify


def environment_proxy(base_url: str) -> str | None:
    """The proxy the environment names for ``base_url`` (``NO_PROXY`` respected), or None."""
    url = urlsplit(base_url)
    if proxy_bypass_environment(url.hostname or ""):
        return None
    return getproxies_environment().get(url.scheme)


def ssl_context(verify: bool | str) -> Any:
    """``verify`` for httpx: a bool, or an SSL context for a CA bundle file or directory."""
    if isinstance(verify, bool):
        return verify
    import ssl

    if os.path.isdir(verify):
        return ssl.create_default_context(capath=verify)
    return ssl.create_default_context(cafile=verify)
