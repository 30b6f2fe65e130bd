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
import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from functools import cached_property
from itertools import islice
from typing import TYPE_CHECKING, Any

from airflow_provider_vikingdb._compat import BaseHook
from airflow_provider_vikingdb.batching import BatchResult, run_batches
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
)
from airflow_provider_vikingdb.filter_delete import (
    DEFAULT_MAX_PASSES,
    DEFAULT_VERIFY_TIMEOUT,
    MAX_PAGE_SIZE,
    FilterDelete,
    FilterDeleteResult,
    OffsetPager,
    ScalarPager,
)
from airflow_provider_vikingdb.filters import parse_filter
from airflow_provider_vikingdb.ids import MAX_BATCH_SIZE, batched, check_batch_size, normalize_ids
from airflow_provider_vikingdb.ratelimit import AdaptiveRateLimiter, limiter_for
from airflow_provider_vikingdb.records import (
    CheckedRecords,
    InvalidRecordsError,
    RecordChecker,
    check_id_field,
    check_records,
    check_ttl,
)
from airflow_provider_vikingdb.target import Target
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
    UPDATE_PATH,
    UPSERT_PATH,
    Answer,
    RetryState,
    agg_total,
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
#: ids a dry run checks for existence; above it, a random sample of this many
DRY_RUN_SAMPLE = 1000
#: fetch_in_collection's own quota (rows/s), documented in vikingdb-api.md section 5
FETCH_QUOTA = 1000.0
#: connect timeout: a refused or black-holed host is known sooner than a slow answer
MAX_CONNECT_TIMEOUT = 10.0


class VikingDBHook(BaseHook):
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
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int) or max_concurrency < 1:
            raise VikingDBConfigError(f"max_concurrency must be a positive integer, got {max_concurrency!r}")
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
        return config_from_connection(self.get_connection(self.vikingdb_conn_id), self.vikingdb_conn_id)

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

        429, 5xx, timeouts, refused connections and connections cut mid-answer are retried
        (exponential backoff with full jitter, or ``Retry-After``), each attempt signed anew;
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
        timeouts = (min(cfg.timeout, MAX_CONNECT_TIMEOUT), cfg.timeout)
        state = RetryState(cfg.max_retries, self.throttle_retries, paced=limiter is not None)
        while True:
            if cancel is not None and cancel.is_set():
                raise VikingDBInterruptedError(path=path)
            ticket = limiter.acquire(rows, sleep=self._waiter(cancel)) if limiter else 0.0
            if cancel is not None and cancel.is_set():
                raise VikingDBInterruptedError(path=path)
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
            if current.expired == INTERRUPTED:
                raise VikingDBInterruptedError(path=path)
            if answer is not None:
                envelope, error = read_envelope(answer, path, cfg.secrets)
                if error is None:
                    if limiter:
                        limiter.on_success(rows)
                    return envelope
                wait_hint = retry_after(answer.header("Retry-After"))
            else:
                kind, detail = failure or (TIMEOUT, "")
                if current.expired == TIMED_OUT:
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
                raise error
            self._log_retry(method, path, error, state.describe(error), delay)
            if delay > 0:
                self._waiter(cancel)(delay)

    async def arequest(
        self, path: str, body: Mapping[str, Any] | None = None, *, method: str = "POST"
    ) -> dict[str, Any]:
        """``request`` for async callers (the trigger), over one ``httpx.AsyncClient`` per hook.

        The same signing, TLS, CA bundle, proxy, whole-attempt timeout, error and retry
        behaviour as ``request``. Reading the connection and signing run in a thread (secrets
        backends and the first volcengine import block), never on the event loop.
        """
        path = full_path(path)
        cfg = await asyncio.to_thread(lambda: self.config)
        client = self._client_for(cfg)
        payload = encode_body(body)
        state = RetryState(cfg.max_retries, self.throttle_retries)
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
                raise error
            self._log_retry(method, path, error, state.describe(error), delay)
            await asyncio.sleep(delay)

    def _client_for(self, cfg: VikingDBConnectionConfig) -> httpx.AsyncClient:
        if self._async_client is None:
            import httpx

            self._async_client = httpx.AsyncClient(
                base_url=cfg.base_url,
                verify=ssl_context(ca_verify(cfg)),
                proxy=environment_proxy(cfg.base_url),
                trust_env=False,  # read once, like the sync session: no netrc, same proxy rules
                timeout=httpx.Timeout(cfg.timeout, connect=min(cfg.timeout, MAX_CONNECT_TIMEOUT)),
            )
        return self._async_client

    def _waiter(self, cancel: Cancel | None) -> Callable[[float], Any]:
        if self._sleep is not None:
            return self._sleep
        return cancel.wait if cancel is not None else time.sleep

    def _log_retry(self, method: str, path: str, error: VikingDBError, text: str, delay: float) -> None:
        self.log.warning(
            "VikingDB %s %s: %s %s (request_id=%s); %s in %.2fs",
            method,
            path,
            error.http_status if error.http_status is not None else "-",
            error.code,
            error.request_id or "-",
            text,
            delay,
        )

    # ---- batched calls ----

    def _limiter(self, target: Target) -> AdaptiveRateLimiter:
        return limiter_for(self.config.base_url, target.name, self.rows_per_second)

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
        on_batch: Callable[[Sequence[str | int], dict[str, Any]], None] | None = None,
    ) -> BatchResult:
        """Delete ``ids`` (validated and de-duplicated first) in batches, or everything with ``del_all``.

        Nothing is sent unless every id is valid. The first batch goes alone; then batches
        go ``max_concurrency`` at a time, paced to the collection's quota. After a permanent
        error no new batch is sent, batches in flight finish, and ``VikingDBBatchError`` says
        which ids were deleted and which were not. ``on_batch(ids, envelope)`` runs for every
        acknowledged batch, one at a time (a deletion receipt writes its lines from it).
        """
        target = Target.of(collection_name, resource_id)
        if del_all:
            if ids is not None:
                raise VikingDBConfigError("give either ids or del_all=True, not both")
            result = BatchResult(target=str(target), del_all=True, batches_total=1)
            envelope = self.request(DELETE_PATH, {**target.body, "del_all": True}, stats=result)
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
            make_body=lambda batch: {**target.body, "ids": list(batch)},
            keys=list,
            batch_size=batch_size,
            max_concurrency=max_concurrency,
            on_progress=on_progress,
            on_batch=on_batch,
        )

    def upsert(
        self,
        rows: Iterable[Mapping[str, Any]],
        *,
        collection_name: str | None = None,
        resource_id: str | None = None,
        key_field: str = "id",
        ttl: int | timedelta | None = None,
        batch_size: int = MAX_BATCH_SIZE,
        max_concurrency: int | None = None,
        on_batch: Callable[[Sequence[Mapping[str, Any]], dict[str, Any]], None] | None = None,
        on_progress: Callable[[BatchResult], None] | None = None,
        chunk_rows: int | None = None,
    ) -> BatchResult:
        """Write ``rows`` (dicts of field -> value) in batches of at most ``batch_size`` (≤ 100).

        A list (or any sequence) is checked whole first (``records.check_records``): nothing is
        sent unless every row is valid. Any other iterable (a generator, a file's records) is
        streamed: read ``chunk_rows`` rows at a time (default: ``batch_size`` * 16 * concurrency),
        each chunk checked before it is sent; a bad row found later stops the upsert there,
        after the chunks before it were written. ``ttl`` (seconds or a ``timedelta``,
        1..2**31-1) goes with every batch.

        ``on_batch(rows, envelope)`` runs for every batch the service acknowledged (one at a
        time). Returns the same summary as ``delete`` (``ids_done`` counts rows written);
        ``VikingDBBatchError`` (``done_ids``: the keys written) when a batch fails for good.
        """
        target = Target.of(collection_name, resource_id)
        check_batch_size(batch_size)
        try:
            seconds = check_ttl(ttl)
            key_field = check_id_field(key_field)
        except InvalidRecordsError as exc:
            raise VikingDBConfigError(str(exc)) from None
        extra = {"ttl": seconds} if seconds is not None else {}
        options = {
            "action": "upsert",
            "path": UPSERT_PATH,
            "target": target,
            "make_body": lambda batch: {**target.body, "data": list(batch), **extra},
            "keys": lambda batch: [row[key_field] for row in batch],
            "batch_size": batch_size,
            "max_concurrency": max_concurrency,
            "on_batch": on_batch,
            "on_progress": on_progress,
        }
        if isinstance(rows, Sequence) and not isinstance(rows, (str, bytes, bytearray)):
            try:
                checked = check_records(rows, key_field)
            except InvalidRecordsError as exc:
                raise VikingDBConfigError(f"{exc}. Nothing was sent.") from None
            return self._run_batches(items=checked, **options)  # type: ignore[arg-type]
        if chunk_rows is None:
            chunk_rows = batch_size * 16 * (max_concurrency or self.max_concurrency)
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise VikingDBConfigError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
        # Whole batches per chunk: the batches sent are the same as for a list.
        chunk_rows = max(chunk_rows // batch_size, 1) * batch_size
        return self._upsert_stream(rows, key_field=key_field, chunk_rows=chunk_rows, **options)

    def _upsert_stream(
        self,
        rows: Iterable[Mapping[str, Any]],
        *,
        key_field: str,
        chunk_rows: int,
        target: Target,
        batch_size: int,
        **options: Any,
    ) -> BatchResult:
        """``upsert`` of an iterable: one ``run_batches`` per chunk, one summary for all of them.

        Each chunk's first batch goes alone, like a list's: a refused first batch costs one
        request. The limiter is the collection's, shared by every chunk, so the pace holds.
        """
        result = BatchResult(target=str(target), action="upsert")
        checker = RecordChecker(key_field, label="rows[{}]")
        source = iter(rows)
        done: list = []
        sent_rows = 0
        while True:
            chunk = CheckedRecords(key_field)
            try:
                for row in islice(source, chunk_rows):
                    chunk.ids.append(checker.check(row))
                    chunk.append(row if isinstance(row, dict) else dict(row))
            except InvalidRecordsError as exc:
                where = "Nothing was sent." if not sent_rows else (
                    f"The {result.ids_done} rows before it were written ({result.batches} batches); "
                    "nothing after it was sent."
                )  # fmt: skip
                raise VikingDBConfigError(f"{exc}. {where}") from None
            if not chunk:
                break
            batches_before = result.batches_total
            try:
                self._run_batches(items=chunk, target=target, batch_size=batch_size, result=result, **options)
            except VikingDBBatchError as exc:
                # Renumber the chunk's error for the whole stream; the rows never read are not done.
                rest = _drain_keys(source, key_field)
                result.ids_requested = sent_rows + len(chunk) + len(rest)
                result.batches_total = batches_before + exc.result.batches_total + -(-len(rest) // batch_size)
                raise VikingDBBatchError(
                    exc.cause,
                    action="upsert",
                    result=result,
                    failed_batches=[batches_before + n for n in exc.failed_batches],
                    done_ids=done + exc.done_ids,
                    not_done_ids=exc.not_done_ids + rest,
                ) from exc.cause
            done.extend(chunk.ids)
            sent_rows += len(chunk)
            result.batches_total = batches_before + -(-len(chunk) // batch_size)
            result.ids_requested = sent_rows
        return result

    def _run_batches(
        self,
        *,
        action: str,
        path: str,
        target: Target,
        items: Sequence[Any],
        make_body: Callable[[Sequence[Any]], dict[str, Any]],
        keys: Callable[[Sequence[Any]], list],
        batch_size: int,
        max_concurrency: int | None,
        on_progress: Callable[[BatchResult], None] | None = None,
        on_batch: Callable[[Sequence[Any], dict[str, Any]], None] | None = None,
        result: BatchResult | None = None,
    ) -> BatchResult:
        concurrency = max_concurrency or self.max_concurrency
        if result is None:
            result = BatchResult(target=str(target), action=action)
        if not items:
            return run_batches(
                action=action, target=str(target), items=items, batch_size=batch_size, concurrency=1,
                send=lambda batch, cancel: {}, keys=keys, log=self.log, result=result,
            )  # fmt: skip
        if concurrency > self.max_concurrency:
            self._resize_pool(concurrency)
        self.session  # noqa: B018  (made here, not raced for by the workers' first requests)
        limiter = self._limiter(target)

        def send(batch: Sequence[Any], cancel: Cancel) -> dict[str, Any]:
            return self.request(
                path, make_body(batch), rows=len(batch), limiter=limiter, stats=result, cancel=cancel
            )

        return run_batches(
            action=action,
            target=str(target),
            items=items,
            batch_size=batch_size,
            concurrency=concurrency,
            send=send,
            keys=keys,
            log=self.log,
            on_batch=on_batch,
            on_progress=on_progress,
            result=result,
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
        target = Target.of(collection_name, resource_id)
        extra = {"output_fields": list(output_fields)} if output_fields is not None else {}
        return self._fetch(FETCH_IN_COLLECTION_PATH, {**target.body, **extra}, ids)

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
        target = Target.of(collection_name, resource_id)
        extra: dict[str, Any] = {"index_name": index_name}
        if partition is not None:
            extra["partition"] = partition
        if output_fields is not None:
            extra["output_fields"] = list(output_fields)
        return self._fetch(FETCH_IN_INDEX_PATH, {**target.body, **extra}, ids)

    def _fetch(self, path: str, base: dict[str, Any], ids: Iterable[str | int]) -> dict[str, list]:
        merged: dict[str, list] = {"fetch": [], "ids_not_exist": []}
        for batch in _batches(normalize_ids(ids)):
            result = self.request(path, {**base, "ids": list(batch)}).get("result") or {}
            merged["fetch"].extend(result.get("fetch") or [])
            merged["ids_not_exist"].extend(result.get("ids_not_exist") or [])
        return merged

    def count_existing(
        self,
        ids: Sequence[str | int],
        *,
        collection_name: str | None = None,
        resource_id: str | None = None,
        sample: int = DRY_RUN_SAMPLE,
        rows_per_second: float = FETCH_QUOTA,
    ) -> tuple[int, int]:
        """How many of ``ids`` the collection holds now: ``(existing, checked)``.

        Checks all ids up to ``sample``, else a random sample of that many (``checked <
        len(ids)``). ``fetch_in_collection`` has its own quota (1000 rows/s by default), so
        the requests are paced to ``rows_per_second``.
        """
        target = Target.of(collection_name, resource_id)
        chosen = list(ids) if len(ids) <= sample else random.sample(list(ids), sample)
        existing = 0
        next_at = time.monotonic()
        for batch in _batches(normalize_ids(chosen)):
            wait = next_at - time.monotonic()
            if wait > 0:
                (self._sleep or time.sleep)(wait)
            next_at = max(next_at, time.monotonic()) + len(batch) / rows_per_second
            result = self.request(FETCH_IN_COLLECTION_PATH, {**target.body, "ids": list(batch)})
            existing += len((result.get("result") or {}).get("fetch") or [])
        return existing, len(chosen)

    def search_random(
        self,
        *,
        index_name: str,
        collection_name: str | None = None,
        resource_id: str | None = None,
        limit: int = 10,
        filter: Mapping[str, Any] | None = None,
        output_fields: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Up to ``limit`` records the index holds, in no order: tells whether an index is empty."""
        body: dict[str, Any] = {**Target.of(collection_name, resource_id).body, "index_name": index_name}
        body["limit"] = limit
        if filter is not None:
            body["filter"] = dict(filter)
        if output_fields is not None:
            body["output_fields"] = list(output_fields)
        result = self.request(SEARCH_RANDOM_PATH, body).get("result") or {}
        return list(result.get("data") or [])

    def count(
        self,
        *,
        index_name: str,
        collection_name: str | None = None,
        resource_id: str | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> int:
        """How many records the index holds (that match ``filter``): the ``agg`` count endpoint.

        It reads the index, which lags the collection (about 20 s; minutes after ``del_all``).
        """
        body: dict[str, Any] = {**Target.of(collection_name, resource_id).body, "index_name": index_name}
        body["op"] = "count"
        if filter is not None:
            body["filter"] = dict(filter)
        result = self.request(AGG_PATH, body).get("result") or {}
        return agg_total(result)

    # ---- delete by filter (VikingDB has none: search the ids, delete them by id) ----

    def iter_matching_ids(
        self,
        *,
        index_name: str,
        filter: Mapping[str, Any] | str,
        collection_name: str | None = None,
        resource_id: str | None = None,
        sort_field: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
    ) -> Iterator[list[str | int]]:
        """The primary keys of the records of ``index_name`` that match ``filter``, one page (list) at a time.

        Never the whole set in memory. With ``sort_field`` (int64 or float32, scalar-indexed),
        pages follow a watermark on it (``search/scalar`` ascending), which stays correct when
        the caller deletes each page before asking for the next while the index still returns
        deleted records; without it, ``search/random`` by offset (correct for a read-only scan).
        The filter is checked first (``filters.parse_filter``).
        """
        target = Target.of(collection_name, resource_id)
        flt = parse_filter(filter)
        base = {**target.body, "index_name": index_name}
        pager = (
            ScalarPager(self.request, base, flt, sort_field, page_size)
            if sort_field
            else OffsetPager(self.request, base, flt, page_size)
        )
        yield from pager

    def filter_delete(
        self,
        *,
        index_name: str,
        filter: Mapping[str, Any] | str,
        collection_name: str | None = None,
        resource_id: str | None = None,
        sort_field: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        batch_size: int = MAX_BATCH_SIZE,
        max_concurrency: int | None = None,
        settle: float | None = None,
        poke_interval: float | None = None,
        verify_timeout: float | None = None,
        max_checked_ids: int | None = None,
        max_passes: int = DEFAULT_MAX_PASSES,
        max_delete: int | None = None,
        on_batch: Callable[[Sequence[Any], dict[str, Any]], None] | None = None,
    ) -> FilterDelete:
        """A delete by filter, ready to ``count()``, ``sample()`` or ``run()`` (see ``delete_by_filter``).

        ``on_batch(ids, envelope)`` runs for every acknowledged delete batch (a receipt's).
        """
        from airflow_provider_vikingdb.index_sync import DEFAULT_MAX_CHECKED_IDS, DEFAULT_POKE_INTERVAL

        target = Target.of(collection_name, resource_id)
        check_batch_size(batch_size)
        return FilterDelete(
            send=self.request,
            delete=lambda ids, batch_hook=on_batch: self.delete(
                ids,
                batch_size=batch_size,
                max_concurrency=max_concurrency,
                on_batch=batch_hook,
                **target.body,
            ),
            target=target,
            index_name=index_name,
            flt=parse_filter(filter),
            sort_field=sort_field,
            page_size=page_size,
            settle=settle,
            poke_interval=DEFAULT_POKE_INTERVAL if poke_interval is None else poke_interval,
            verify_timeout=DEFAULT_VERIFY_TIMEOUT if verify_timeout is None else verify_timeout,
            max_checked_ids=DEFAULT_MAX_CHECKED_IDS if max_checked_ids is None else max_checked_ids,
            max_passes=max_passes,
            max_delete=max_delete,
            log=self.log,
            sleep=self._sleep or time.sleep,
        )

    def delete_by_filter(
        self, *, index_name: str, filter: Mapping[str, Any] | str, **kwargs: Any
    ) -> FilterDeleteResult:
        """Delete every record that ``filter`` matches in ``index_name``, and verify it.

        Counts first (``agg``; ``max_delete`` is checked against it before anything is
        deleted), then searches page by page and deletes each page through the batch pool
        while the next page is searched; each pass ends once the index has applied its
        deletes (ids seen there and then gone, or ``settle`` seconds), then counts again:
        leftovers get another pass, up to ``max_passes``. Takes ``filter_delete``'s keyword
        arguments. Raises ``FilterDeleteError`` (its ``result`` says what was done).
        """
        runner = self.filter_delete(index_name=index_name, filter=filter, **kwargs)
        matched = runner.count()
        if runner.max_delete is not None and matched > runner.max_delete:
            raise VikingDBConfigError(
                f"{matched} records match the filter, more than max_delete={runner.max_delete}: nothing was "
                f"deleted. If that many is intended, raise max_delete to at least {matched}"
            )
        if matched == 0:
            runner.result.matched = runner.result.remaining = 0
            return runner.result
        return runner.run(matched)

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


def _batches(ids: Sequence[str | int]) -> Iterator[Sequence[str | int]]:
    return batched(ids, MAX_BATCH_SIZE)


def _drain_keys(rows: Iterator[Mapping[str, Any]], key_field: str) -> list:
    """The keys of the rows a stopped stream did not send (to say what was not written)."""
    keys: list = []
    try:
        for row in rows:
            if isinstance(row, Mapping) and key_field in row:
                keys.append(row[key_field])
    except Exception:  # a bad row further on: what was not written is known up to it
        pass
    return keys
