"""VikingDBHook: an Airflow connection turned into signed, retried VikingDB requests.

This is the only module of the provider that speaks HTTP or signs. ``requests``
and ``volcengine`` are imported on first use, never at import time: DAG files
import this module while the DAG processor parses them.
"""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_vikingdb._compat import BaseHook, mask_secret
from airflow_provider_vikingdb.connection_fields import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    UI_FIELD_BEHAVIOUR,
    legacy_form_widgets,
)
from airflow_provider_vikingdb.exceptions import (
    VikingDBAuthError,
    VikingDBConfigError,
    VikingDBConnectionError,
    VikingDBError,
    VikingDBThrottledError,
)
from airflow_provider_vikingdb.ids import MAX_BATCH_SIZE, batched, check_batch_size, normalize_ids
from airflow_provider_vikingdb.ratelimit import AdaptiveRateLimiter, limiter_for

if TYPE_CHECKING:
    import requests

API = "/api/vikingdb"
DELETE_PATH = f"{API}/data/delete"
UPSERT_PATH = f"{API}/data/upsert"
UPDATE_PATH = f"{API}/data/update"
FETCH_IN_COLLECTION_PATH = f"{API}/data/fetch_in_collection"
FETCH_IN_INDEX_PATH = f"{API}/data/fetch_in_index"
SEARCH_RANDOM_PATH = f"{API}/data/search/random"
PING_PATH = f"{API}/Ping"

SERVICE = "vikingdb"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_MAX_CONCURRENCY = 8
#: a throttled request is retried this many times before the batch counts as failed
DEFAULT_THROTTLE_RETRIES = 60
BACKOFF_BASE = 0.5
BACKOFF_CAP = 20.0

_PUBLIC_HOST = re.compile(r"^api-vikingdb\.vikingdb\.(?P<region>[a-z0-9-]+)\.i?volces\.com$")
_REGION = re.compile(r"^[a-z]{2,}(-[a-z0-9]+)+$")


# --------------------------------------------------------------------------- connection


@dataclass(frozen=True)
class VikingDBConnectionConfig:
    """What the hook needs from the Airflow connection, parsed and checked once.

    Secrets are kept out of ``repr`` so that logging the config leaks nothing.
    """

    base_url: str
    host_header: str
    region: str
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    api_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    verify: bool | str = True

    @property
    def auth_mode(self) -> str:
        return "api_key" if self.api_key else "ak_sk"


def parse_connection(
    *,
    conn_id: str,
    host: str | None,
    port: int | None,
    login: str | None,
    password: str | None,
    extra: Mapping[str, Any],
) -> VikingDBConnectionConfig:
    """Check a ``vikingdb`` connection's fields; every error names the field and the fix."""
    where = f"Airflow connection {conn_id!r}"
    host = (host or "").strip()
    if not host:
        raise VikingDBConfigError(
            f"{where} has no host: set it to the data-plane host, e.g. "
            "api-vikingdb.vikingdb.cn-beijing.volces.com, or a URL such as http://127.0.0.1:8765"
        )

    scheme_extra = _text(extra.get("scheme"))
    if "://" in host:
        url = urlsplit(host)
        scheme = url.scheme.lower()
        hostname = url.hostname or ""
        url_port = url.port
        if url.path not in ("", "/"):
            raise VikingDBConfigError(f"{where}: host {host!r} has a path; give only scheme://host[:port]")
        if scheme_extra and scheme_extra.lower() != scheme:
            raise VikingDBConfigError(
                f"{where}: host URL says {scheme!r} but extra 'scheme' says {scheme_extra!r}; remove one"
            )
        if port and url_port and int(port) != url_port:
            raise VikingDBConfigError(f"{where}: host URL has port {url_port} but field 'port' is {port}")
        port = port or url_port
    else:
        scheme = (scheme_extra or "https").lower()
        hostname = host
    if scheme not in ("https", "http"):
        raise VikingDBConfigError(f"{where}: extra 'scheme' must be 'https' or 'http', got {scheme!r}")
    if not hostname:
        raise VikingDBConfigError(f"{where}: host {host!r} has no host name")

    if port is not None and port != "":
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise VikingDBConfigError(f"{where}: field 'port' must be a number, got {port!r}") from None
        if not 0 < port < 65536:
            raise VikingDBConfigError(f"{where}: field 'port' must be 1..65535, got {port}")
    else:
        port = None
    default_port = 443 if scheme == "https" else 80
    netloc = hostname if port in (None, default_port) else f"{hostname}:{port}"
    if ":" in hostname and not hostname.startswith("["):  # IPv6 literal
        netloc = f"[{hostname}]" if port in (None, default_port) else f"[{hostname}]:{port}"

    region = _text(extra.get("region"))
    if not region:
        match = _PUBLIC_HOST.match(hostname)
        if not match:
            raise VikingDBConfigError(
                f"{where}: cannot tell the signing region from host {hostname!r}; set extra 'region' "
                "(e.g. cn-beijing, cn-shanghai, cn-guangzhou, ap-southeast-1)"
            )
        region = match.group("region")
    if not _REGION.match(region):
        raise VikingDBConfigError(
            f"{where}: extra 'region' {region!r} is not a region name such as cn-beijing or ap-southeast-1"
        )

    api_key = _text(extra.get("api_key"))
    login = _text(login)
    # These travel in HTTP headers: a line break would end the header (and could forge another).
    for name, value in (
        ("login", login),
        ("extra 'api_key'", api_key),
        ("extra 'session_token'", extra.get("session_token")),
    ):
        if isinstance(value, str) and ("\n" in value or "\r" in value):
            raise VikingDBConfigError(f"{where}: {name} contains a line break; paste it without one")
    password = password or None
    if not api_key and not (login and password):
        missing = "Access Key ID (login)" if not login else "Secret Access Key (password)"
        raise VikingDBConfigError(
            f"{where} has no usable credentials: {missing} is empty. Set login and password to the "
            "Access Key ID and Secret Access Key, or set extra 'api_key'"
        )

    timeout = _number(extra.get("timeout"), DEFAULT_TIMEOUT, float, where, "timeout")
    if timeout <= 0:
        raise VikingDBConfigError(f"{where}: extra 'timeout' must be > 0 seconds, got {timeout}")
    max_retries = _number(extra.get("max_retries"), DEFAULT_MAX_RETRIES, int, where, "max_retries")
    if max_retries < 0:
        raise VikingDBConfigError(f"{where}: extra 'max_retries' must be >= 0, got {max_retries}")

    return VikingDBConnectionConfig(
        base_url=f"{scheme}://{netloc}",
        host_header=netloc,
        region=region,
        access_key=login,
        secret_key=password if not api_key else None,
        api_key=api_key,
        session_token=_text(extra.get("session_token")),
        timeout=timeout,
        max_retries=max_retries,
        verify=_verify(extra.get("verify"), where),
    )


def _text(value: Any) -> str | None:
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _number(value: Any, default, kind, where: str, name: str):
    if value is None or value == "":
        return default
    try:
        if isinstance(value, bool):
            raise ValueError
        number = kind(float(value)) if kind is int else kind(value)
        if kind is int and float(value) != number:
            raise ValueError
        return number
    except (TypeError, ValueError):
        raise VikingDBConfigError(f"{where}: extra {name!r} must be a number, got {value!r}") from None


def _verify(value: Any, where: str) -> bool | str:
    if value is None or value == "":
        return True
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    return text  # a CA bundle path; requests reports a missing file clearly


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
    return request.headers


def encode_body(body: Mapping[str, Any] | None) -> bytes:
    """Compact JSON: the bytes that are hashed are the bytes that are sent."""
    if body is None:
        return b""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --------------------------------------------------------------------------- results


@dataclass
class BatchResult:
    """What a batched delete or upsert did. ``to_dict()`` is small and JSON-safe (it goes to XCom)."""

    target: str
    action: str = "delete"
    ids_requested: int = 0
    ids_done: int = 0
    batches: int = 0
    batches_total: int = 0
    del_all: bool = False
    throttled: int = 0
    retries: int = 0
    request_ids: list[str] = field(default_factory=list, repr=False)

    @property
    def ids_deleted(self) -> int:
        return self.ids_done if self.action == "delete" else 0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("request_ids")
        data[f"ids_{'deleted' if self.action == 'delete' else 'written'}"] = data.pop("ids_done")
        data["last_request_id"] = self.request_ids[-1] if self.request_ids else None
        return data


class VikingDBBatchError(VikingDBError):
    """A batched call stopped part-way: says what was and was not done.

    ``done_ids`` were acknowledged by the service; ``not_done_ids`` were not
    (their batch failed, or was never sent once a permanent error was seen).
    """

    def __init__(
        self,
        cause: VikingDBError,
        *,
        action: str,
        result: BatchResult,
        failed_batches: list[int],
        done_ids: list,
        not_done_ids: list,
    ) -> None:
        self.cause = cause
        self.result = result
        self.failed_batches = failed_batches
        self.done_ids = done_ids
        self.not_done_ids = not_done_ids
        summary = (
            f"{action} stopped on {result.target}: batch {', '.join(map(str, failed_batches))} of "
            f"{result.batches_total} failed with {cause}. Done before it stopped: {len(done_ids)} of "
            f"{result.ids_requested} ids in {result.batches} batches. Not done: {len(not_done_ids)} ids"
            f"{_sample(not_done_ids)}."
        )
        super().__init__(
            summary,
            code=cause.code,
            request_id=cause.request_id,
            http_status=cause.http_status,
        )

    def _text(self) -> str:
        return self.message


def _sample(ids: Sequence, limit: int = 5) -> str:
    if not ids:
        return ""
    shown = ", ".join(repr(i) for i in ids[:limit])
    return f" (first: {shown}{', ...' if len(ids) > limit else ''})"


# --------------------------------------------------------------------------- the hook


class VikingDBHook(BaseHook):
    """Signed, retried access to the VikingDB V2 data plane.

    :param vikingdb_conn_id: Airflow connection of type ``vikingdb``.
    :param max_concurrency: requests in flight at once for batched calls (pool size).
    :param rows_per_second: optional fixed cap on rows written per second per collection;
        below it the hook adapts to the service's quota by itself.
    """

    conn_name_attr = "vikingdb_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "VikingDB"

    def __init__(
        self,
        vikingdb_conn_id: str = DEFAULT_CONN_ID,
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        rows_per_second: float | None = None,
        throttle_retries: int = DEFAULT_THROTTLE_RETRIES,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise VikingDBConfigError(f"max_concurrency must be a positive integer, got {max_concurrency!r}")
        if rows_per_second is not None and not rows_per_second > 0:
            raise VikingDBConfigError(f"rows_per_second must be > 0 or None, got {rows_per_second!r}")
        self.vikingdb_conn_id = vikingdb_conn_id
        self.max_concurrency = max_concurrency
        self.rows_per_second = rows_per_second
        self.throttle_retries = throttle_retries
        self._sleep: Callable[[float], None] = time.sleep

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vikingdb_conn_id={self.vikingdb_conn_id!r})"

    # ---- connection form (Airflow 3.1; 3.2+ reads the provider info) ----

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        return legacy_form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {key: value for key, value in UI_FIELD_BEHAVIOUR.items()}

    # ---- connection ----

    @cached_property
    def config(self) -> VikingDBConnectionConfig:
        conn = self.get_connection(self.vikingdb_conn_id)
        extra = conn.extra_dejson or {}
        _mask(conn.password, extra.get("api_key"), extra.get("session_token"))
        return parse_connection(
            conn_id=self.vikingdb_conn_id,
            host=conn.host,
            port=conn.port,
            login=conn.login,
            password=conn.password,
            extra=extra,
        )

    @cached_property
    def session(self) -> requests.Session:
        """One session per hook: keep-alive connections reused by every request and thread.

        The pool holds ``max_concurrency`` connections (at least 10), so concurrent batches
        reuse their connections instead of opening and discarding extra ones.
        """
        import requests
        from requests.utils import get_environ_proxies

        cfg = self.config
        session = requests.Session()
        self._mount(session, self.max_concurrency)
        # What requests would read from the environment on every call (proxy variables, a CA
        # bundle), read once here: per request, that lookup costs more than signing. With
        # trust_env off, a ~/.netrc entry can no longer replace the signed Authorization header.
        session.proxies.update(get_environ_proxies(cfg.base_url))
        verify = cfg.verify
        if verify is True:
            verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        session.verify = verify
        session.trust_env = False
        return session

    def _mount(self, session: requests.Session, size: int) -> None:
        from requests.adapters import HTTPAdapter

        # urllib3 must not retry by itself: every attempt needs a fresh signature.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(size, 10), max_retries=0)
        for prefix in ("https://", "http://"):
            old = session.adapters.get(prefix)
            session.mount(prefix, adapter)
            if old is not None and old is not adapter:
                old.close()

    def get_conn(self) -> requests.Session:
        return self.session

    def close(self) -> None:
        if "session" in self.__dict__:
            self.__dict__.pop("session").close()

    # ---- one request ----

    def signed_headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        """The headers of one attempt: Bearer API key, or an AK/SK signature of exactly ``body``."""
        cfg = self.config
        headers = {"Accept": "application/json", "Host": cfg.host_header}
        if method != "GET":
            headers["Content-Type"] = "application/json"
        if cfg.api_key:
            headers["Authorization"] = f"Bearer {cfg.api_key}"
            if cfg.session_token:
                headers["X-Security-Token"] = cfg.session_token
            return headers
        return sign_headers(
            method=method,
            path=path,
            body=body,
            headers=headers,
            access_key=cfg.access_key or "",
            secret_key=cfg.secret_key or "",
            region=cfg.region,
            session_token=cfg.session_token,
        )

    def request(
        self,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        method: str = "POST",
        rows: int = 0,
        limiter: AdaptiveRateLimiter | None = None,
        stats: BatchResult | None = None,
    ) -> dict[str, Any]:
        """Send one signed request and return the service's envelope (``code``, ``request_id``, ``result``).

        429, 5xx, timeouts and dropped connections are retried (exponential
        backoff with full jitter, or ``Retry-After``); any other 4xx raises at
        once. Every attempt is signed anew. Raises ``VikingDBError``.

        With a ``limiter`` (batched calls), each attempt of ``rows`` rows waits for
        its slot, and a 429 is retried as soon as the limiter allows: it paces the
        retry, so no backoff of our own is added.
        """
        import requests

        if not path.startswith("/"):
            path = f"{API}/{path}"
        cfg = self.config
        payload = encode_body(body)
        url = cfg.base_url + path
        timeout = (min(cfg.timeout, 10.0), cfg.timeout)
        failures = throttles = 0
        while True:
            ticket = limiter.acquire(rows, sleep=self._sleep) if limiter else 0.0
            headers = self.signed_headers(method, path, payload)
            retry_after = None
            try:
                response = self.session.request(method, url, data=payload, headers=headers, timeout=timeout)
            except requests.Timeout as exc:
                error: VikingDBError = VikingDBConnectionError(
                    f"no answer within {cfg.timeout:g}s ({type(exc).__name__})", code="Timeout", path=path
                )
            except requests.exceptions.SSLError as exc:
                # Not transient: retrying a TLS failure only delays the same error.
                hint = ""
                if "WRONG_VERSION_NUMBER" in str(exc) or "record layer failure" in str(exc):
                    hint = (
                        " The server does not speak TLS: if it is plain http (the local server, "
                        "a private link), set the connection's extra 'scheme' to 'http'."
                    )
                raise VikingDBError(
                    f"TLS with {cfg.base_url} failed: {_first_line(exc)}.{hint}", code="SSLError", path=path
                ) from None
            except requests.ConnectionError as exc:
                error = VikingDBConnectionError(
                    f"could not reach {cfg.base_url}: {_first_line(exc)}", code="ConnectionError", path=path
                )
            else:
                envelope, error = _read_envelope(response, path)
                if error is None:
                    if limiter:
                        limiter.on_success(rows)
                    return envelope
                retry_after = _retry_after(response.headers.get("Retry-After"))

            if isinstance(error, VikingDBThrottledError):
                throttles += 1
                if limiter:
                    limiter.on_throttle(ticket, rows)
                if throttles > self.throttle_retries:
                    if stats is not None:
                        _count(stats, throttled=1)
                    raise error
                if retry_after is not None:
                    delay = retry_after
                elif limiter:
                    delay = 0.0  # the limiter holds the retry until the quota covers it
                else:
                    delay = _full_jitter(throttles, cap=2.0)
                attempt_text = f"throttle retry {throttles}/{self.throttle_retries}"
                if stats is not None:
                    _count(stats, throttled=1, retries=1)
            else:
                if not error.retryable or failures >= cfg.max_retries:
                    raise error
                failures += 1
                delay = retry_after if retry_after is not None else _full_jitter(failures)
                attempt_text = f"retry {failures}/{cfg.max_retries}"
                if stats is not None:
                    _count(stats, retries=1)
            self.log.warning(
                "VikingDB %s %s: %s %s (request_id=%s); %s in %.2fs",
                method,
                path,
                error.http_status if error.http_status is not None else "-",
                error.code,
                error.request_id or "-",
                attempt_text,
                delay,
            )
            if delay > 0:
                self._sleep(delay)

    # ---- batched calls ----

    def _target(self, collection_name: str | None, resource_id: str | None) -> dict[str, str]:
        if bool(collection_name) == bool(resource_id):
            raise VikingDBConfigError(
                "give exactly one of collection_name or resource_id "
                f"(got collection_name={collection_name!r}, resource_id={resource_id!r})"
            )
        return {"collection_name": collection_name} if collection_name else {"resource_id": resource_id}

    def _limiter(self, target: Mapping[str, str]) -> AdaptiveRateLimiter:
        (name,) = target.values()
        return limiter_for(self.config.base_url, name, self.rows_per_second)

    def delete(
        self,
        ids: Iterable[str | int] | None = None,
        *,
        collection_name: str | None = None,
        resource_id: str | None = None,
        del_all: bool = False,
        batch_size: int = MAX_BATCH_SIZE,
        max_concurrency: int | None = None,
        on_progress: Callable[[BatchResult], None] | None = None,
    ) -> BatchResult:
        """Delete ``ids`` (validated and de-duplicated first) in batches, or everything with ``del_all``.

        Nothing is sent unless every id is valid. Batches go ``max_concurrency``
        at a time, paced to the collection's quota. After a permanent error no
        new batch is sent, batches in flight finish, and ``VikingDBBatchError``
        says which ids were deleted and which were not.
        """
        target = self._target(collection_name, resource_id)
        label = describe_target(target)
        if del_all:
            if ids is not None:
                raise VikingDBConfigError("give either ids or del_all=True, not both")
            result = BatchResult(target=label, del_all=True, batches_total=1)
            envelope = self.request(DELETE_PATH, {**target, "del_all": True}, stats=result)
            result.batches = 1
            result.request_ids.append(envelope.get("request_id") or "")
            return result
        check_batch_size(batch_size)
        id_list = normalize_ids(ids)
        return self._run_batches(
            action="delete",
            path=DELETE_PATH,
            target=target,
            items=id_list,
            make_body=lambda batch: {**target, "ids": batch},
            keys=lambda batch: batch,
            batch_size=batch_size,
            max_concurrency=max_concurrency,
            on_progress=on_progress,
        )

    def upsert(
        self,
        rows: Sequence[Mapping[str, Any]],
        *,
        collection_name: str | None = None,
        resource_id: str | None = None,
        key_field: str = "id",
        ttl: int | None = None,
        batch_size: int = MAX_BATCH_SIZE,
        max_concurrency: int | None = None,
    ) -> BatchResult:
        """Write ``rows`` (dicts of field -> value) in batches of at most 100.

        Returns the same summary as ``delete`` (``ids_done`` counts rows written).
        """
        target = self._target(collection_name, resource_id)
        check_batch_size(batch_size)
        rows = list(rows)
        for position, row in enumerate(rows):
            if not isinstance(row, Mapping) or key_field not in row:
                raise VikingDBConfigError(f"rows[{position}] must be a dict with the key field {key_field!r}")
        extra = {"ttl": ttl} if ttl is not None else {}
        return self._run_batches(
            action="upsert",
            path=UPSERT_PATH,
            target=target,
            items=rows,
            make_body=lambda batch: {**target, "data": list(batch), **extra},
            keys=lambda batch: [row[key_field] for row in batch],
            batch_size=batch_size,
            max_concurrency=max_concurrency,
        )

    def _run_batches(
        self,
        *,
        action: str,
        path: str,
        target: Mapping[str, str],
        items: list,
        make_body: Callable[[Sequence], dict],
        keys: Callable[[Sequence], list],
        batch_size: int,
        max_concurrency: int | None,
        on_progress: Callable[[BatchResult], None] | None = None,
    ) -> BatchResult:
        """Send ``items`` in batches, ``max_concurrency`` requests in flight, paced by the limiter.

        Each of ``concurrency`` workers (the calling thread is one) takes the next batch,
        sends it (retries included) and comes back for another: no futures, no queue, no
        hand-off per batch. After a permanent failure no worker takes a new batch; those in
        flight finish. Batches are slices of ``items`` made when sent; what was done is one
        byte per batch, so nothing holds a second copy of the ids.
        """
        concurrency = max_concurrency or self.max_concurrency
        total = -(-len(items) // batch_size)
        result = BatchResult(
            target=describe_target(target), action=action, ids_requested=len(items), batches_total=total
        )
        if not items:
            self.log.info("VikingDB %s on %s: no ids given, nothing sent", action, result.target)
            return result
        if concurrency > self.max_concurrency:
            self._resize_pool(concurrency)
        self.session  # noqa: B018  (made here, not raced for by the workers' first requests)
        limiter = self._limiter(target)
        lock = threading.Lock()
        source = enumerate(batched(items, batch_size))
        done = bytearray(total)  # done[n] = 1 once batch n + 1 was acknowledged
        failed: dict[int, VikingDBError] = {}
        stopping = False
        started = last_report = time.monotonic()
        caller = threading.current_thread()

        def work() -> None:
            nonlocal last_report
            while True:
                with lock:
                    if failed or stopping:
                        return
                    number, batch = next(source, (None, None))
                if batch is None:
                    return
                try:
                    envelope = self.request(
                        path, make_body(batch), rows=len(batch), limiter=limiter, stats=result
                    )
                except Exception as exc:
                    if not isinstance(exc, VikingDBError):
                        exc = VikingDBError(f"{type(exc).__name__}: {exc}", code="ClientError")
                    with lock:
                        failed[number + 1] = exc
                    return
                with lock:
                    done[number] = 1
                    result.batches += 1
                    result.ids_done += len(batch)
                    result.request_ids.append(envelope.get("request_id") or "")
                if threading.current_thread() is caller:
                    now = time.monotonic()
                    if now - last_report >= 10:
                        last_report = now
                        self._report(action, result, started)
                        if on_progress:
                            on_progress(result)

        helpers = [
            threading.Thread(target=work, name=f"vikingdb-{action}-{n}", daemon=True)
            for n in range(1, min(concurrency, total))
        ]
        for helper in helpers:
            helper.start()
        try:
            work()
        finally:
            stopping = True  # the caller stopped (done, or interrupted): no new batches
            for helper in helpers:
                helper.join()

        if failed:
            done_keys: list = []
            not_done: list = []
            for number, batch in enumerate(batched(items, batch_size)):
                (done_keys if done[number] else not_done).extend(keys(batch))
            first = failed[min(failed)]
            raise VikingDBBatchError(
                first,
                action=action,
                result=result,
                failed_batches=sorted(failed),
                done_ids=done_keys,
                not_done_ids=not_done,
            ) from first
        self._report(action, result, started)
        return result

    def _report(self, action: str, result: BatchResult, started: float) -> None:
        elapsed = max(time.monotonic() - started, 1e-9)
        self.log.info(
            "VikingDB %s on %s: %d/%d ids in %d/%d batches, %.0f rows/s, %d throttled, %d retries",
            action,
            result.target,
            result.ids_done,
            result.ids_requested,
            result.batches,
            result.batches_total,
            result.ids_done / elapsed,
            result.throttled,
            result.retries,
        )

    def _resize_pool(self, size: int) -> None:
        self.max_concurrency = size
        if "session" in self.__dict__:
            self._mount(self.session, size)

    # ---- reads ----

    def fetch_in_collection(
        self,
        ids: Iterable[str | int],
        *,
        collection_name: str | None = None,
        resource_id: str | None = None,
        output_fields: Sequence[str] | None = None,
    ) -> dict[str, list]:
        """Records as the collection holds them now: ``{"fetch": [...], "ids_not_exist": [...]}``."""
        target = self._target(collection_name, resource_id)
        extra = {"output_fields": list(output_fields)} if output_fields is not None else {}
        return self._fetch(FETCH_IN_COLLECTION_PATH, {**target, **extra}, ids)

    def fetch_in_index(
        self,
        ids: Iterable[str | int],
        *,
        index_name: str,
        collection_name: str | None = None,
        resource_id: str | None = None,
        partition: str | None = None,
        output_fields: Sequence[str] | None = None,
    ) -> dict[str, list]:
        """Records as the index still holds them (it lags behind the collection)."""
        target = self._target(collection_name, resource_id)
        extra: dict[str, Any] = {"index_name": index_name}
        if partition is not None:
            extra["partition"] = partition
        if output_fields is not None:
            extra["output_fields"] = list(output_fields)
        return self._fetch(FETCH_IN_INDEX_PATH, {**target, **extra}, ids)

    def _fetch(self, path: str, base: dict[str, Any], ids: Iterable[str | int]) -> dict[str, list]:
        merged: dict[str, list] = {"fetch": [], "ids_not_exist": []}
        for batch in batched(normalize_ids(ids), MAX_BATCH_SIZE):
            result = self.request(path, {**base, "ids": batch}).get("result") or {}
            merged["fetch"].extend(result.get("fetch") or [])
            merged["ids_not_exist"].extend(result.get("ids_not_exist") or [])
        return merged

    def search_random(
        self,
        *,
        index_name: str,
        collection_name: str | None = None,
        resource_id: str | None = None,
        limit: int = 10,
        output_fields: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` records the index holds, in no order: tells whether an index is empty."""
        body: dict[str, Any] = {**self._target(collection_name, resource_id), "index_name": index_name}
        body["limit"] = limit
        if output_fields is not None:
            body["output_fields"] = list(output_fields)
        result = self.request(SEARCH_RANDOM_PATH, body).get("result") or {}
        return list(result.get("data") or [])

    def ping(self) -> dict[str, Any]:
        return self.request(PING_PATH, method="GET")

    def test_connection(self) -> tuple[bool, str]:
        """Prove the credentials with a real signed call that changes nothing.

        A fetch from a collection that does not exist: the service checks the
        signature first, so a ``NotFound`` answer means the credentials work.
        """
        probe = "__airflow_connection_test__"
        try:
            self.request(FETCH_IN_COLLECTION_PATH, {"collection_name": probe, "ids": ["probe"]})
        except VikingDBConfigError as exc:
            return False, str(exc)
        except VikingDBAuthError as exc:
            return False, str(exc)
        except VikingDBError as exc:
            if exc.http_status == 404 or (exc.code or "").startswith("NotFound"):
                return True, f"Connected to {self.config.base_url}: credentials accepted."
            return False, str(exc)
        except Exception as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return True, f"Connected to {self.config.base_url}: credentials accepted."


# --------------------------------------------------------------------------- helpers


def describe_target(target: Mapping[str, str]) -> str:
    """How logs and errors name what is written to: collection 'x' or resource 'y'."""
    ((kind, name),) = target.items()
    return f"collection {name!r}" if kind == "collection_name" else f"resource {name!r}"


def _mask(*secrets: Any) -> None:
    """Register secrets with Airflow's masker ourselves: env-var connections are not always masked."""
    for secret in secrets:
        if secret:
            mask_secret(secret)


def _read_envelope(response: requests.Response, path: str) -> tuple[dict[str, Any], VikingDBError | None]:
    """The envelope of a 200/Success answer, or the error any other answer means."""
    status = response.status_code
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        text = (response.text or "").strip().replace("\n", " ")
        message = f"answer is not a JSON envelope: {text[:200]!r}" if text else "empty answer"
        return {}, _error_class(status)(
            message,
            code="BadResponse",
            http_status=status,
            request_id=response.headers.get("X-Tt-Logid"),
            path=path,
        )
    if status == 200 and data.get("code") == "Success":
        return data, None
    code = str(data.get("code") or ("BadResponse" if status == 200 else f"HTTP{status}"))
    message = str(data.get("message") or response.reason or "")
    request_id = data.get("request_id") or response.headers.get("X-Tt-Logid")
    cls = _error_class(status)
    if cls is VikingDBAuthError:
        message = (
            f"the credentials were rejected: {message} Check the connection's Access Key ID / Secret "
            "Access Key (or api_key), its region, and the worker's clock."
        )
    return data, cls(message, code=code, request_id=request_id, http_status=status, path=path)


def _error_class(status: int) -> type[VikingDBError]:
    if status in (401, 403):
        return VikingDBAuthError
    if status == 429:
        return VikingDBThrottledError
    return VikingDBError


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), 60.0)
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _full_jitter(attempt: int, cap: float = BACKOFF_CAP) -> float:
    return random.uniform(0, min(cap, BACKOFF_BASE * 2 ** (attempt - 1)))


_stats_lock = threading.Lock()


def _count(stats: BatchResult, *, throttled: int = 0, retries: int = 0) -> None:
    """Retry counters, bumped from several threads (rarely: retries only)."""
    with _stats_lock:
        stats.throttled += throttled
        stats.retries += retries


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
