"""The hook's reads and searches: fetches, counts, paged searches and delete by filter.

A mixin of ``VikingDBHook`` (in ``hooks/vikingdb.py``, which owns the connection and the
request path); split out so that each module stays readable. Every method sends through
``self.request`` and batches through ``self.delete``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow_provider_vikingdb.exceptions import VikingDBConfigError
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
from airflow_provider_vikingdb.target import Target
from airflow_provider_vikingdb.transport import (
    AGG_PATH,
    FETCH_IN_COLLECTION_PATH,
    FETCH_IN_INDEX_PATH,
    SEARCH_RANDOM_PATH,
    agg_total,
)

if TYPE_CHECKING:
    from airflow_provider_vikingdb.batching import OnUnknown
    from airflow_provider_vikingdb.hooks._host import HookHost as _Base
else:
    _Base = object  # at run time a plain mixin: VikingDBHook's MRO is unchanged (see hooks/_host.py)

#: ids a dry run checks for existence; above it, a random sample of this many
DRY_RUN_SAMPLE = 1000
#: fetch_in_collection's own quota (rows/s), documented in vikingdb-api.md section 5
FETCH_QUOTA = 1000.0


class VikingDBReadsMixin(_Base):
    """Reads, counts, searches and delete by filter; ``self`` is a ``VikingDBHook``."""

    def fetch_in_collection(
        self,
        ids: Iterable[str | int],
        *,
        collection_name: str | None = None,
        resource_id: str | None = None,
        output_fields: Sequence[str] | None = None,
    ) -> dict[str, list[Any]]:
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
    ) -> dict[str, list[Any]]:
        """Records as the index still holds them (it lags behind the collection)."""
        target = Target.of(collection_name, resource_id)
        extra: dict[str, Any] = {"index_name": index_name}
        if partition is not None:
            extra["partition"] = partition
        if output_fields is not None:
            extra["output_fields"] = list(output_fields)
        return self._fetch(FETCH_IN_INDEX_PATH, {**target.body, **extra}, ids)

    def _fetch(self, path: str, base: dict[str, Any], ids: Iterable[str | int]) -> dict[str, list[Any]]:
        merged: dict[str, list[Any]] = {"fetch": [], "ids_not_exist": []}
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
        on_unknown: OnUnknown | None = None,
    ) -> FilterDelete:
        """A delete by filter, ready to ``count()``, ``sample()`` or ``run()`` (see ``delete_by_filter``).

        ``on_batch(ids, envelope)`` runs for every acknowledged delete batch, ``on_unknown(ids,
        error)`` for every delete batch whose outcome is unknown (a receipt's ``on_batch`` and
        ``on_unknown``; also settable later as the runner's attributes of those names).
        """
        from airflow_provider_vikingdb.index_sync import DEFAULT_MAX_CHECKED_IDS, DEFAULT_POKE_INTERVAL

        target = Target.of(collection_name, resource_id)
        check_batch_size(batch_size)
        runner = FilterDelete(
            send=self.request,
            delete=lambda ids, on_batch=None, on_unknown=None: self.delete(
                ids,
                batch_size=batch_size,
                max_concurrency=max_concurrency,
                on_batch=on_batch,
                on_unknown=on_unknown,
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
        runner.on_batch, runner.on_unknown = on_batch, on_unknown
        return runner

    def delete_by_filter(
        self, *, index_name: str, filter: Mapping[str, Any] | str, **kwargs: Any
    ) -> FilterDeleteResult:
        """Delete every record that ``filter`` matches in ``index_name``, and verify it.

        Counts first (``agg``; ``max_delete`` is checked against it before anything is
        deleted; a count of 0 made less than ``settle`` seconds after the call is made again
        then, as records written just before may not be indexed yet), then searches page by
        page and deletes each page through the batch pool while the next page is searched;
        each pass ends once the index has applied its deletes (ids seen there and then gone,
        or ``settle`` seconds), then counts again: leftovers get another pass, up to
        ``max_passes``. Takes ``filter_delete``'s keyword arguments. Raises
        ``FilterDeleteError`` (its ``result`` says what was done).
        """
        asked_at = time.time()
        runner = self.filter_delete(index_name=index_name, filter=filter, **kwargs)
        matched = runner.count_settled(asked_at)
        if runner.max_delete is not None and matched > runner.max_delete:
            raise VikingDBConfigError(
                f"{matched} records match the filter, more than max_delete={runner.max_delete}: nothing was "
                f"deleted. If that many is intended, raise max_delete to at least {matched}"
            )
        if matched == 0:
            runner.result.matched = runner.result.remaining = 0
            return runner.result
        return runner.run(matched)


def _batches(ids: Sequence[str | int]) -> Iterator[Sequence[str | int]]:
    return batched(ids, MAX_BATCH_SIZE)
