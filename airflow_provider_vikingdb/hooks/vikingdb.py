"""VikingDBHook: an Airflow connection turned into signed, retried VikingDB requests.

The hook owns the whole request path, sync (``request``, over one ``requests``
session) and async (``arequest``, over one ``httpx.AsyncClient``, for the
trigger): build the body, sign every attempt anew, send under a deadline for the
whole attempt, read the envelope, classify, decide the retry. What a status or a
transport fault means and whether it is retried is decided once, in ``transport``.

``requests``, ``httpx`` and ``volcengine`` are imported on first use, never at
import time: DAG files import this module while the DAG processor parses them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_vikingdb._compat import AirflowNotFoundException, BaseHook
from airflow_provider_vikingdb.arguments import check_positive_int
from airflow_provider_vikingdb.batching import BatchResult
from airflow_provider_vikingdb.connection import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    UI_FIELD_BEHAVIOUR,
    VikingDBConnectionConfig,
    config_from_connection,
    legacy_form_widgets,
    parse_connection,
)
from airflow_provider_vikingdb.deadline import INTERRUPTED, TIMED_OUT, Cancel, attempt, watched_adapter
from airflow_provider_vikingdb.exceptions import (
    VikingDBAuthError,
    VikingDBBatchError,
    VikingDBConfigError,
    VikingDBError,
    VikingDBInterruptedError,
    VikingDBThrottledError,
)
from airflow_provider_vikingdb.hooks.reads import VikingDBReadsMixin
from airflow_provider_vikingdb.hooks.writes import VikingDBWritesMixin
from airflow_provider_vikingdb.ratelimit import AdaptiveRateLimiter
from airflow_provider_vikingdb.transport import (
    AGG_PATH,
    API,
    DEFAULT_THROTTLE_RETRIES,
    DELETE_PATH,
    FETCH_IN_COLLECTION_PATH,
    FETCH_IN_INDEX_PATH,
    PING_PATH,
    SEARCH_RANDOM_PATH,
    SEARCH_SCALAR_PATH,
    TIMEOUT,
    UNREACHABLE,
    UPDATE_PATH,
    UPSERT_PATH,
    Answer,
    RetryState,
    ca_verify,
    classify_httpx_error,
    classify_requests_error,
    encode_body,
    environment_proxy,
    full_path,
    read_envelope,
    request_headers,
    retry_after,
    sign_headers,
    ssl_context,
    transport_error,
)

if TYPE_CHECKING:
    import httpx
    import requests

__all__ = [
    "AGG_PATH",
    "API",
    "DELETE_PATH",
    "FETCH_IN_COLLECTION_PATH",
    "FETCH_IN_INDEX_PATH",
    "PING_PATH",
    "SEARCH_RANDOM_PATH",
    "SEARCH_SCALAR_PATH",
    "UPDATE_PATH",
    "UPSERT_PATH",
    "BatchResult",
    "VikingDBBatchError",
    "VikingDBConnectionConfig",
    "VikingDBHook",
    "encode_body",
    "parse_connection",
    "sign_headers",
]

DEFAULT_MAX_CONCURRENCY = 8
#: connect timeout: a refused or black-holed host is known sooner than a slow answer
MAX_CONNECT_TIMEOUT = 10.0


def connect_timeout(timeout: float) -> float:
    """The connect phase's bound: ends before the whole attempt's deadline, so that a host that
    does not answer is reported as unreachable (nothing sent), not as a deadline passed."""
    return min(0.9 * timeout, MAX_CONNECT_TIMEOUT)


def undefined_connection(conn_id: str) -> VikingDBConfigError:
    """Airflow's "The conn_id ... isn't defined", with where to define it."""
    return VikingDBConfigError(
        f"the Airflow connection {conn_id!r} is not defined: add it (Admin > Connections, connection "
        f"type 'VikingDB'), or set the environment variable AIRFLOW_CONN_{conn_id.upper()} to its JSON "
        "(docs/connection.md)"
    )


def gave_up(error: VikingDBError, state: RetryState, seconds: float, rows: int = 0) -> VikingDBError:
    """The error to raise when the retries are over: a 429 says it gave up, after how long, and why
    that may be (the other errors already say what they are)."""
    if not isinstance(error, VikingDBThrottledError) or state.throttles <= state.throttle_retries:
        return error
    why = (
        f"a batch of {rows} rows may be more than the collection's write quota allows at once (lower "
        "batch_size), or other writers use it up (lower max_concurrency or rows_per_second, or run later)"
        if rows
        else "the collection or index is busy; run later"
    )
    return VikingDBThrottledError(
        f"{error.message}; gave up after {state.throttle_retries} throttled retries in {seconds:.1f}s: {why}",
        code=error.code,
        request_id=error.request_id,
        http_status=error.http_status,
        path=error.path,
    )


class VikingDBHook(VikingDBWritesMixin, VikingDBReadsMixin, BaseHook):
    """Signed, retried access to the VikingDB V2 data plane.

    :param vikingdb_conn_id: Airflow connection of type ``vikingdb``.
    :param max_concurrency: requests in flight at once for batched calls (pool size).
    :param rows_per_second: optional fixed cap on rows written per second per collection;
        below it the hook adapts to the service's quota by itself.
    :param throttle_retries: how often one request is retried on HTTP 429 before its batch fails.
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
        try:
            check_positive_int("max_concurrency", max_concurrency)
        except ValueError as exc:
            raise VikingDBConfigError(str(exc)) from None
        if rows_per_second is not None and not rows_per_second > 0:
            raise VikingDBConfigError(f"rows_per_second must be > 0 or None, got {rows_per_second!r}")
        self.vikingdb_conn_id = vikingdb_conn_id
        self.max_concurrency = max_concurrency
        self.rows_per_second = rows_per_second
        self.throttle_retries = throttle_retries
        #: tests replace it to skip waits; None: real, interruptible waits
        self._sleep: Callable[[float], None] | None = None
        self._async_client: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vikingdb_conn_id={self.vikingdb_conn_id!r})"

    # ---- connection form (Airflow 3.1; 3.2+ reads the provider info) ----

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        return legacy_form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return dict(UI_FIELD_BEHAVIOUR)

    # ---- connection and clients ----

    @cached_property
    def config(self) -> VikingDBConnectionConfig:
        try:
            conn = self.get_connection(self.vikingdb_conn_id)
        except AirflowNotFoundException:
            raise undefined_connection(self.vikingdb_conn_id) from None
        return config_from_connection(conn, self.vikingdb_conn_id)

    async def aconfig(self) -> VikingDBConnectionConfig:
        """``config`` for async callers (the trigger): the connection read with Airflow's async API.

        Not ``config`` in a thread: on Airflow 3.1 a thread that asks the triggerer's supervisor
        for a connection races the trigger runner on their channel and kills the runner
        ("Response read out of order"; apache/airflow#64620), stalling every deferred task.
        """
        if "config" not in self.__dict__:
            try:
                conn = await self.aget_connection(self.vikingdb_conn_id)
            except AirflowNotFoundException:
                raise undefined_connection(self.vikingdb_conn_id) from None
            self.__dict__["config"] = config_from_connection(conn, self.vikingdb_conn_id)
        return self.config

    @cached_property
    def session(self) -> requests.Session:
        """One session per hook: keep-alive connections reused by every request and thread.

        The pool holds ``max_concurrency`` connections (at least 10), so concurrent batches
        reuse their connections instead of opening and discarding extra ones.
        """
        import requests

        cfg = self.config
        session = requests.Session()
        self._mount(session, self.max_concurrency)
        # What requests would read from the environment on every call (proxy variables, a CA
        # bundle), read once here, the same way the async client reads them. With trust_env
        # off, a ~/.netrc entry can no longer replace the signed Authorization header.
        proxy = environment_proxy(cfg.base_url)
        if proxy:
            session.proxies.update({"http": proxy, "https": proxy})
        session.verify = ca_verify(cfg)
        session.trust_env = False
        return session

    def _mount(self, session: requests.Session, size: int) -> None:
        adapter = watched_adapter(max(size, 10))
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

    def __enter__(self) -> VikingDBHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> VikingDBHook:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        client, self._async_client = self._async_client, None
        if client is not None:
            await client.aclose()

    # ---- one request ----

    def signed_headers(self, method: str, path: str, body: bytes) -> dict[str, str]:
        """The headers of one attempt: Bearer API key, or an AK/SK signature of exactly ``body``."""
        return request_headers(self.config, method, path, body)

    def request(
        self,
        path: str,
        body: Mapping[str, Any] | None = None,
        *,
        method: str = "POST",
        rows: int = 0,
        limiter: AdaptiveRateLimiter | None = None,
        stats: BatchResult | None = None,
        cancel: Cancel | None = None,
    ) -> dict[str, Any]:
        """Send one signed request and return the service's envelope (``code``, ``request_id``, ``result``).

        429, 5xx, timeouts, hosts that cannot be reached (name, refusal, connect timeout) and
        connections cut mid-answer are retried (exponential backoff with full jitter, or
        ``Retry-After``), each attempt signed anew;
        any other 4xx and TLS failures raise at once. ``timeout`` bounds each whole attempt
        (connect, send, the full answer). Raises ``VikingDBError``.

        With a ``limiter`` (batched calls), each attempt of ``rows`` rows waits for its slot,
        and a 429 is retried as soon as the limiter allows. With ``cancel``, no attempt starts
        once it is set, and the attempt in flight is abandoned.
        """
        path = full_path(path)
        cfg = self.config
        session = self.session
        payload = encode_body(body)
        url = cfg.base_url + path
        timeouts = (connect_timeout(cfg.timeout), cfg.timeout)
        state = RetryState(cfg.max_retries, self.throttle_retries, paced=limiter is not None)
        began = time.monotonic()
        lost = False  # an attempt was sent and its answer lost: the request may have been applied
        while True:
            if cancel is not None and cancel.is_set():
                raise _lost_before(VikingDBInterruptedError(path=path), lost)
            ticket = limiter.acquire(rows, sleep=self._waiter(cancel)) if limiter else 0.0
            if cancel is not None and cancel.is_set():
                raise _lost_before(VikingDBInterruptedError(path=path), lost)
            headers = self.signed_headers(method, path, payload)
            failure: tuple[str, str] | None = None
            answer: Answer | None = None
            with attempt(cfg.timeout, cancel) as current:
                try:
                    response = session.request(method, url, data=payload, headers=headers, timeout=timeouts)
                    answer = Answer(response.status_code, response.content, response.headers, response.reason)
                except Exception as exc:  # built into an error below, outside this block: the
                    failure = classify_requests_error(exc)  # cause holds the request's headers
            # Decided outside the except block, so no error keeps the cause (and its headers) alive.
            if current.expired == INTERRUPTED:  # abandoned in flight: it may have been applied
                raise _lost_before(VikingDBInterruptedError(path=path, in_flight=True), lost)
            if answer is not None:
                envelope, error = read_envelope(answer, path, cfg.secrets)
                if error is None:
                    if limiter:
                        limiter.on_success(rows)
                    return envelope
                wait_hint = retry_after(answer.header("Retry-After"))
            else:
                kind, detail = failure or (TIMEOUT, "")
                # A host that could not be reached stays that (nothing was sent), even when the
                # connect timeout and the attempt's deadline are the same (timeout <= 10 s).
                if current.expired == TIMED_OUT and kind != UNREACHABLE:
                    kind, detail = TIMEOUT, "the attempt's deadline passed"
                error, wait_hint = transport_error(kind, detail, cfg, path), None
            if limiter and error.http_status == 429:
                limiter.on_throttle(ticket, rows)
            delay = state.next_delay(error, wait_hint)
            if error.http_status == 429 and stats is not None:
                stats.count(throttled=1, retries=0 if delay is None else 1)
            elif delay is not None and stats is not None:
                stats.count(retries=1)
            if delay is None:
                raise _lost_before(gave_up(error, state, time.monotonic() - began, rows), lost)
            lost = lost or error.maybe_applied
            self._log_retry(method, path, error, state, delay, paced=limiter is not None)
            if delay > 0:
                self._waiter(cancel)(delay)

    async def arequest(
        self, path: str, body: Mapping[str, Any] | None = None, *, method: str = "POST"
    ) -> dict[str, Any]:
        """``request`` for async callers (the trigger), over one ``httpx.AsyncClient`` per hook.

        The same signing, TLS, CA bundle, proxy, whole-attempt timeout, error and retry
        behaviour as ``request``. The connection is read with Airflow's async API (``aconfig``);
        signing runs in a thread (the first volcengine import blocks), never on the event loop.
        """
        path = full_path(path)
        cfg = await self.aconfig()
        client = self._client_for(cfg)
        payload = encode_body(body)
        state = RetryState(cfg.max_retries, self.throttle_retries)
        began = time.monotonic()
        while True:
            headers = await asyncio.to_thread(request_headers, cfg, method, path, payload)
            failure: tuple[str, str] | None = None
            answer: Answer | None = None
            try:
                response = await asyncio.wait_for(
                    client.request(method, path, content=payload, headers=headers), cfg.timeout
                )
                answer = Answer(
                    response.status_code, response.content, response.headers, response.reason_phrase
                )
            except asyncio.TimeoutError:
                failure = (TIMEOUT, "the attempt's deadline passed")
            except Exception as exc:
                failure = classify_httpx_error(exc)
            if answer is not None:
                envelope, error = read_envelope(answer, path, cfg.secrets)
                if error is None:
                    return envelope
                wait_hint = retry_after(answer.header("Retry-After"))
            else:
                kind, detail = failure or (TIMEOUT, "")
                error, wait_hint = transport_error(kind, detail, cfg, path), None
            delay = state.next_delay(error, wait_hint)
            if delay is None:
                raise gave_up(error, state, time.monotonic() - began)
            self._log_retry(method, path, error, state, delay)
            await asyncio.sleep(delay)

    def _client_for(self, cfg: VikingDBConnectionConfig) -> httpx.AsyncClient:
        if self._async_client is None:
            import httpx

            self._async_client = httpx.AsyncClient(
                base_url=cfg.base_url,
                verify=ssl_context(ca_verify(cfg)),
                proxy=environment_proxy(cfg.base_url),
                trust_env=False,  # read once, like the sync session: no netrc, same proxy rules
                timeout=httpx.Timeout(cfg.timeout, connect=connect_timeout(cfg.timeout)),
            )
        return self._async_client

    def _waiter(self, cancel: Cancel | None) -> Callable[[float], Any]:
        if self._sleep is not None:
            return self._sleep
        return cancel.wait if cancel is not None else time.sleep

    def _log_retry(
        self,
        method: str,
        path: str,
        error: VikingDBError,
        state: RetryState,
        delay: float,
        paced: bool = False,
    ) -> None:
        throttled = isinstance(error, VikingDBThrottledError)
        # A throttle or two is the limiter finding the quota: a warning for the first of a request
        # and every tenth after it, not one for each of a storm's sixty.
        level = logging.WARNING if not throttled or state.throttles % 10 in (0, 1) else logging.DEBUG
        self.log.log(
            level,
            "VikingDB %s %s: %s %s (request_id=%s); %s %s",
            method,
            path,
            error.http_status if error.http_status is not None else "-",
            error.code,
            error.request_id or "-",
            state.describe(error),
            "when the collection's rate limiter allows"
            if throttled and paced and not delay
            else f"in {delay:.2f}s",
        )

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
        except (VikingDBConfigError, VikingDBAuthError) as exc:
            return False, str(exc)
        except VikingDBError as exc:
            if exc.http_status == 404 or (exc.code or "").startswith("NotFound"):
                return True, f"Connected to {self.config.base_url}: credentials accepted."
            return False, str(exc)
        return True, f"Connected to {self.config.base_url}: credentials accepted."


# --------------------------------------------------------------------------- helpers


def _lost_before(error: VikingDBError, lost: bool) -> VikingDBError:
    """``error``, marked ``maybe_applied`` when an earlier attempt of its request lost its answer."""
    if lost:
        error.earlier_attempt_lost = True
    return error
