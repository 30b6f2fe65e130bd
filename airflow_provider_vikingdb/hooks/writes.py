"""The hook's batched writes: delete (by ids or ``del_all``) and upsert, in batches of at most 100.

A mixin of ``VikingDBHook`` (in ``hooks/vikingdb.py``, which owns the connection and the
request path). Batches go through ``batching.run_batches``: the first alone, then up to
``max_concurrency`` at once, paced by the collection's adaptive rate limiter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import timedelta
from itertools import islice
from typing import TYPE_CHECKING, Any

from airflow_provider_vikingdb.arguments import check_positive_int
from airflow_provider_vikingdb.batching import BatchResult, Keys, OnUnknown, run_batches
from airflow_provider_vikingdb.deadline import Cancel
from airflow_provider_vikingdb.exceptions import VikingDBBatchError, VikingDBConfigError
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
from airflow_provider_vikingdb.transport import DELETE_PATH, UPSERT_PATH

if TYPE_CHECKING:
    from airflow_provider_vikingdb.hooks._host import HookHost as _Base
else:
    _Base = object  # at run time a plain mixin: VikingDBHook's MRO is unchanged (see hooks/_host.py)


class VikingDBWritesMixin(_Base):
    """Batched delete and upsert; ``self`` is a ``VikingDBHook``."""

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
        on_unknown: OnUnknown | None = None,
    ) -> BatchResult:
        """Delete ``ids`` (validated and de-duplicated first) in batches, or everything with ``del_all``.

        Nothing is sent unless every id is valid. The first batch goes alone; then batches
        go ``max_concurrency`` at a time, paced to the collection's quota. After a permanent
        error no new batch is sent, batches in flight finish, and ``VikingDBBatchError`` says
        which ids were deleted (``done_ids``), which may have been (``unknown_ids``: sent, the
        answer lost) and which were not (``not_done_ids``). ``on_batch(ids, envelope)`` runs for
        every acknowledged batch, one at a time (a deletion receipt writes its lines from it);
        ``on_unknown(ids, error)`` for every batch whose outcome is unknown when the call stops
        (failed, or interrupted: then ``error`` is None for a batch that was in flight).
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
            on_unknown=on_unknown,
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
        on_unknown: OnUnknown | None = None,
    ) -> BatchResult:
        """Write ``rows`` (dicts of field -> value) in batches of at most ``batch_size`` (≤ 100).

        A list (or any sequence) is checked whole first (``records.check_records``): nothing is
        sent unless every row is valid. Any other iterable (a generator, a file's records) is
        streamed: read ``chunk_rows`` rows at a time (default: ``batch_size`` * 16 * concurrency),
        each chunk checked before it is sent; a bad row found later stops the upsert there,
        after the chunks before it were written. ``ttl`` (seconds or a ``timedelta``,
        1..2**31-1) goes with every batch.

        ``on_batch(rows, envelope)`` runs for every batch the service acknowledged (one at a
        time), ``on_unknown(rows, error)`` for every batch whose outcome is unknown when the
        call stops. Returns the same summary as ``delete`` (``ids_done`` counts rows written);
        ``VikingDBBatchError`` (``done_ids``: the keys written; ``unknown_ids``: the keys that
        may have been) when a batch fails for good.
        """
        target = Target.of(collection_name, resource_id)
        check_batch_size(batch_size)
        try:
            seconds = check_ttl(ttl)
            key_field = check_id_field(key_field)
        except InvalidRecordsError as exc:
            raise VikingDBConfigError(str(exc)) from None
        extra = {"ttl": seconds} if seconds is not None else {}
        options: dict[str, Any] = {
            "action": "upsert",
            "path": UPSERT_PATH,
            "target": target,
            "make_body": lambda batch: {**target.body, "data": list(batch), **extra},
            "keys": lambda batch: [row[key_field] for row in batch],
            "batch_size": batch_size,
            "max_concurrency": max_concurrency,
            "on_batch": on_batch,
            "on_progress": on_progress,
            "on_unknown": on_unknown,
        }
        if isinstance(rows, Sequence) and not isinstance(rows, (str, bytes, bytearray)):
            try:
                checked = check_records(rows, key_field)
            except InvalidRecordsError as exc:
                raise VikingDBConfigError(f"{exc}. Nothing was sent.") from None
            return self._run_batches(items=checked, **options)
        if chunk_rows is None:
            chunk_rows = batch_size * 16 * (max_concurrency or self.max_concurrency)
        try:
            check_positive_int("chunk_rows", chunk_rows)
        except ValueError as exc:
            raise VikingDBConfigError(str(exc)) from None
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
        done: list[str | int] = []
        while True:
            chunk = CheckedRecords(key_field)
            try:
                for row in islice(source, chunk_rows):
                    chunk.ids.append(checker.check(row))
                    chunk.append(row if isinstance(row, dict) else dict(row))
            except InvalidRecordsError as exc:
                where = "Nothing was sent." if not result.ids_requested else (
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
                result.ids_requested += len(rest)  # already counts this chunk and those before
                result.batches_total += -(-len(rest) // batch_size)
                raise VikingDBBatchError(
                    exc.cause,
                    action="upsert",
                    result=result,
                    failed_batches=[batches_before + n for n in exc.failed_batches],
                    done_ids=done + exc.done_ids,
                    unknown_ids=exc.unknown_ids,
                    not_done_ids=exc.not_done_ids + rest,
                    failures={batches_before + n: e for n, e in exc.failures.items()},
                ) from exc.cause
            done.extend(chunk.ids)
        return result

    def _run_batches(
        self,
        *,
        action: str,
        path: str,
        target: Target,
        items: Sequence[Any],
        make_body: Callable[[Sequence[Any]], dict[str, Any]],
        keys: Keys,
        batch_size: int,
        max_concurrency: int | None,
        on_progress: Callable[[BatchResult], None] | None = None,
        on_batch: Callable[[Sequence[Any], dict[str, Any]], None] | None = None,
        result: BatchResult | None = None,
        on_unknown: OnUnknown | None = None,
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
            on_unknown=on_unknown,
        )

    def _resize_pool(self, size: int) -> None:
        self.max_concurrency = size
        if "session" in self.__dict__:
            self._mount(self.session, size)


def _batches(ids: Sequence[str | int]) -> Iterator[Sequence[str | int]]:
    return batched(ids, MAX_BATCH_SIZE)


def _drain_keys(rows: Iterator[object], key_field: str) -> list[str | int]:
    """The keys of the rows a stopped stream did not send (to say what was not written)."""
    keys: list[str | int] = []
    try:
        for row in rows:
            if isinstance(row, Mapping) and key_field in row:
                keys.append(row[key_field])
    except Exception:  # a bad row further on: what was not written is known up to it
        pass
    return keys
