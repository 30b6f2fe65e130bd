"""Delete by filter: find the matching primary keys page by page, delete them, prove it.

VikingDB has no delete-by-filter (API notes, section 6): the client searches an index
for the matching ids and deletes them by id, while the index keeps returning deleted
records for a while (about 20 s). Pure except for the two callables it is given:
``send(path, body) -> envelope`` (the hook's ``request``) and ``delete(ids) ->
BatchResult`` (the hook's batched delete). Cheap to import.

Paging that stays correct while the index still holds what was just deleted:

- ``ScalarPager`` (a ``sort_field``, int64 or float32): ``search/scalar`` ascending, and a
  moving watermark: the next page searches ``filter AND sort_field >= last value``, so
  records deleted from earlier pages (below the watermark) are never returned again,
  however late the index applies their delete. Records at the boundary value already
  taken are skipped by id; a page that is all one value is followed by offset within it.
- ``OffsetPager`` (no sort field): ``search/random`` from offset 0, skipping (by id) what
  this pass already took, and moving the offset past the page each time: it never
  re-deletes an id and never searches the same page of deleted ids again. When the index
  applies deletes mid-pass, the offset can pass over records: the pass ends, the index is
  waited for, and the next pass (from offset 0, on an index without the deleted ids) finds them.

``FilterDelete.run`` pipelines: a producer thread searches the next page while the
previous one is being deleted (at most two pages of ids in memory), so the delete quota,
not search round trips, bounds the throughput. Each pass ends by waiting until the index
has applied its deletes (``IndexSyncCheck``: ids seen in the index and then gone, or the
settle time), then counts what still matches; leftovers start another pass (random
paging), up to ``max_passes``, then the task fails saying how many remain.

A delete batch whose answer was lost (cut off, timed out, abandoned by an interruption) may
have been applied: it counts as outcome unknown (``FilterDeleteResult.ids_unknown``), and
``on_unknown(ids, error)`` hears of it, as ``on_batch(ids, envelope)`` hears of each
acknowledged one (a deletion receipt writes its lines from both). A ``FilterDeleteError`` says
what matched three ways: deleted (acknowledged), outcome unknown, not deleted.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_vikingdb.exceptions import VikingDBError, end_sentence, plural
from airflow_provider_vikingdb.filters import and_filters
from airflow_provider_vikingdb.index_sync import (
    DEFAULT_MAX_CHECKED_IDS,
    DEFAULT_POKE_INTERVAL,
    DEFAULT_SETTLE,
    choose_ids_to_check,
    wait_blocking,
)
from airflow_provider_vikingdb.index_sync import IndexSyncCheck as _IndexSyncCheck
from airflow_provider_vikingdb.target import Target
from airflow_provider_vikingdb.transport import AGG_PATH, SEARCH_RANDOM_PATH, SEARCH_SCALAR_PATH, agg_total

if TYPE_CHECKING:
    from airflow_provider_vikingdb.batching import OnUnknown

#: VikingDB's documented maximum ``limit`` of a search
MAX_PAGE_SIZE = 5000
#: passes before giving up on records that keep matching (the first, then leftovers)
DEFAULT_MAX_PASSES = 3
#: how long one pass's index wait may take before the task fails (seconds)
DEFAULT_VERIFY_TIMEOUT = 10 * 60.0
#: ids a dry run shows
SAMPLE_SIZE = 10

Send = Callable[[str, dict[str, Any]], Mapping[str, Any]]


def check_page_size(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PAGE_SIZE:
        raise ValueError(
            f"page_size must be an integer from 1 to {MAX_PAGE_SIZE} (VikingDB's search limit), got {value!r}"
        )
    return value


def check_max_passes(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_passes must be a positive integer, got {value!r}")
    return value


def _data(envelope: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], int | None]:
    result = envelope.get("result") or {}
    data = [item for item in result.get("data") or [] if isinstance(item, Mapping)]
    matched = result.get("filter_matched_count")
    return data, matched if isinstance(matched, int) and not isinstance(matched, bool) else None


class ScalarPager:
    """Pages of matching ids in ascending ``sort_field`` order, by watermark (see the module doc).

    State between pages: the watermark ``low`` (the last page's last value), ``taken``
    (ids at that value already handed out) and ``offset`` (positions at that value passed
    over, used only when a whole page had one value). Iterating yields lists of new ids.
    """

    def __init__(
        self, send: Send, base: Mapping[str, Any], flt: Mapping[str, Any], sort_field: str, page_size: int
    ) -> None:
        self.send, self.base, self.filter, self.sort_field = send, dict(base), dict(flt), sort_field
        self.page_size = check_page_size(page_size)
        self.low: Any = None
        self.taken: set[Any] = set()
        self.offset = 0
        self.searches = 0
        self._matched_at_low: int | None = None

    def _search(self) -> tuple[list[Mapping[str, Any]], int | None]:
        flt = self.filter
        if self.low is not None:
            flt = and_filters(flt, {"op": "range", "field": self.sort_field, "gte": self.low})
        body = {
            **self.base,
            "field": self.sort_field,
            "order": "asc",
            "filter": flt,
            "limit": self.page_size,
            "offset": self.offset,
            "output_fields": [],
        }
        self.searches += 1
        return _data(self.send(SEARCH_SCALAR_PATH, body))

    def __iter__(self) -> Iterator[list[Any]]:
        while True:
            data, matched = self._search()
            # Paging by offset within one value: if the index dropped some of the records we
            # passed over since the last search, the offset now skips untaken ones. Step back
            # by as many (re-seen ids are skipped by ``taken``) and search again.
            if self.offset and matched is not None and self._matched_at_low is not None:
                dropped = self._matched_at_low - matched
                self._matched_at_low = matched
                if dropped > 0:
                    self.offset = max(self.offset - dropped, 0)
                    continue
            if not data:
                return
            fresh = [
                item["id"]
                for item in data
                if not (item.get("score") == self.low and item["id"] in self.taken)
            ]
            last = data[-1].get("score")
            if last is None:
                raise VikingDBError(
                    f"search/scalar answered records without a score (the value of {self.sort_field!r}): "
                    "cannot page by it; leave sort_field unset to page without it",
                    code="BadResponse",
                )
            single = data[0].get("score") == last
            if single and last == self.low:
                self.taken.update(item["id"] for item in data)
                self.offset += len(data)
            else:
                self.taken = {item["id"] for item in data if item.get("score") == last}
                self.offset = len(data) if single else 0
                self.low = last
            self._matched_at_low = matched
            if fresh:
                yield fresh
            if len(data) < self.page_size and not self.offset:
                return  # a short page from the start of the watermark: nothing lies beyond it


class OffsetPager:
    """Pages of matching ids from ``search/random``, never handing out an id twice in one pass."""

    def __init__(self, send: Send, base: Mapping[str, Any], flt: Mapping[str, Any], page_size: int) -> None:
        self.send, self.base, self.filter = send, dict(base), dict(flt)
        self.page_size = check_page_size(page_size)
        self.offset = 0
        self.searches = 0
        #: ids handed out in this pass: until the index applies their delete it returns them
        self.taken: set[Any] = set()

    def __iter__(self) -> Iterator[list[Any]]:
        while True:
            body = {
                **self.base,
                "filter": self.filter,
                "limit": self.page_size,
                "offset": self.offset,
                "output_fields": [],
            }
            self.searches += 1
            data, _ = _data(self.send(SEARCH_RANDOM_PATH, body))
            fresh = [item["id"] for item in data if item["id"] not in self.taken]
            self.taken.update(fresh)
            self.offset += len(data)  # past this page, whether its ids were new or still indexed
            if fresh:
                yield fresh
            if len(data) < self.page_size:
                return


@dataclass
class FilterDeleteResult:
    """What a delete by filter did; ``to_dict()`` is JSON-safe (it goes to XCom)."""

    target: str
    filter: dict[str, Any]
    matched: int | None = None
    ids_deleted: int = 0
    #: ids of delete batches whose answer was lost: the service may have deleted them
    ids_unknown: int = 0
    #: ids searched and not deleted: the failed page's refused, or never sent (of a run that stopped)
    ids_refused: int = 0
    pages: int = 0
    passes: int = 0
    searches: int = 0
    batches: int = 0
    throttled: int = 0
    retries: int = 0
    remaining: int | None = None
    last_request_id: str | None = None
    index_proof: str | None = None
    #: Unix time the last delete batch was acknowledged (None: nothing deleted)
    deleted_at: float | None = None
    delete_seconds: float = 0.0
    verify_seconds: float = 0.0
    request_ids: list[str] = field(default_factory=list, repr=False)

    def add(self, batch: Any) -> None:
        self.ids_deleted += batch.ids_deleted
        self.batches += batch.batches
        self.throttled += batch.throttled
        self.retries += batch.retries
        if batch.request_ids:
            self.last_request_id = batch.request_ids[-1]

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "filter": self.filter,
            "matched": self.matched,
            "ids_deleted": self.ids_deleted,
            "pages": self.pages,
            "passes": self.passes,
            "searches": self.searches,
            "batches": self.batches,
            "throttled": self.throttled,
            "retries": self.retries,
            "remaining": self.remaining,
            "last_request_id": self.last_request_id,
            "index_proof": self.index_proof,
            "deleted_at": self.deleted_at,
            "delete_seconds": round(self.delete_seconds, 3),
            "verify_seconds": round(self.verify_seconds, 3),
        }

    def progress(self) -> str:
        return (
            f"{plural(self.ids_deleted, 'id')} deleted from {self.target} in {plural(self.pages, 'page')} "
            f"({plural(self.passes, 'pass')})"
        )

    def stopped(self) -> str:
        """``In all: `` ``progress()`` and the rest of the split, for a run that stopped.

        Deleted (acknowledged), outcome unknown, not deleted (searched, then refused or never
        sent: ``ids_refused``), not reached yet (``not_reached``), and how many came to match
        during the run (``matched_later``). A deletion receipt's ``ids_not_deleted`` is the sum of
        the two "not" counts. "In all" tells it from the failed page's own split, which a message
        quotes before it.
        """
        unknown = plural(self.ids_unknown, "id")
        if self.ids_unknown:
            unknown += " (sent, no answer came back: the service may have deleted them)"
        text = f"In all: {self.progress()}; outcome unknown: {unknown}"
        text += f"; not deleted (refused, or never sent): {plural(self.ids_refused, 'id')}"
        if self.matched is not None:
            text += (
                f"; not reached yet: {self.not_reached} of the {plural(self.matched, 'id')} that matched "
                "at the start"
            )
            if self.matched_later:
                text += f" ({self.matched_later} more came to match during the run)"
        return text

    @property
    def taken_on(self) -> int:
        """Ids the run searched and sent, or tried to: deleted, outcome unknown, refused."""
        return self.ids_deleted + self.ids_unknown + self.ids_refused

    @property
    def not_reached(self) -> int:
        """Of what matched at the start, how many the run had not searched for yet (an estimate when
        records came to match during the run)."""
        return max((self.matched or 0) - self.taken_on, 0)

    @property
    def matched_later(self) -> int:
        """How many more the run took on than matched at the start: records that came to match."""
        return max(self.taken_on - (self.matched or 0), 0) if self.matched is not None else 0


class FilterDeleteError(VikingDBError):
    """A delete by filter stopped: ``result`` says what was done before; ``cause`` why.

    Without a ``cause`` (the run itself gave up), ``retryable`` says whether running it again
    could finish it: records still matching after ``max_passes`` or an index slower than
    ``verify_timeout`` may be gone by then; a ``max_delete`` cap will be just as low.
    """

    def __init__(
        self,
        message: str,
        result: FilterDeleteResult,
        cause: VikingDBError | None = None,
        *,
        retryable: bool = False,
    ) -> None:
        self.result = result
        self.cause = cause
        self._retryable = retryable
        super().__init__(
            message,
            code=cause.code if cause else "FilterDeleteIncomplete",
            request_id=cause.request_id if cause else None,
            http_status=cause.http_status if cause else None,
        )

    def _text(self) -> str:
        return self.message

    @property
    def retryable(self) -> bool:
        return self.cause.retryable if self.cause is not None else self._retryable


class FilterDelete:
    """One delete by filter: search, delete page by page, wait for the index, verify.

    :param send: ``send(path, body) -> envelope`` (the hook's ``request``).
    :param delete: ``delete(ids, on_batch=..., on_unknown=...) -> BatchResult`` (the hook's batched
        delete of one page, with its callbacks).
    :param target: the collection.
    :param index_name: the index searched (its scalar indexes must cover the filter's fields).
    :param flt: the filter, already checked (``filters.parse_filter``).
    :param sort_field: an int64/float32 field to page by (watermark); None: random paging.
    :param settle: seconds after which the index must have applied a delete (index_sync).
    :param max_delete: stop (and fail) rather than delete more than this many in all.
    """

    def __init__(
        self,
        *,
        send: Send,
        delete: Callable[..., Any],
        target: Target,
        index_name: str,
        flt: Mapping[str, Any],
        sort_field: str | None = None,
        page_size: int = MAX_PAGE_SIZE,
        settle: float | None = None,
        poke_interval: float = DEFAULT_POKE_INTERVAL,
        verify_timeout: float = DEFAULT_VERIFY_TIMEOUT,
        max_checked_ids: int = DEFAULT_MAX_CHECKED_IDS,
        max_passes: int = DEFAULT_MAX_PASSES,
        max_delete: int | None = None,
        log: Any,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.send, self.delete, self.target, self.index_name = send, delete, target, index_name
        #: ``on_batch(ids, envelope)`` for every acknowledged delete batch (a deletion receipt's)
        self.on_batch: Callable[[Sequence[Any], dict[str, Any]], None] | None = None
        #: ``on_unknown(ids, error)`` for every delete batch whose outcome is unknown (a receipt's);
        #: ``error`` is None for one in flight when the run was interrupted
        self.on_unknown: OnUnknown | None = None
        self.filter = dict(flt)
        self.sort_field = sort_field
        self.page_size = check_page_size(page_size)
        self.settle, self.poke_interval, self.verify_timeout = settle, poke_interval, verify_timeout
        self.max_checked_ids = max_checked_ids
        self.max_passes = check_max_passes(max_passes)
        self.max_delete = max_delete
        self.log, self.sleep = log, sleep
        self.base = {**target.body, "index_name": index_name}
        self.result = FilterDeleteResult(target=str(target), filter=self.filter)
        #: what the delete is doing now, for the line an interruption logs
        self._phase = "starting"
        self._began = time.monotonic()

    @property
    def settle_seconds(self) -> float:
        """``settle``, or its default: how late the index may show a write or a delete."""
        return DEFAULT_SETTLE if self.settle is None else self.settle

    # ---- reads ----

    def count(self) -> int:
        """How many records of the index match the filter now (``agg`` count)."""
        envelope = self.send(AGG_PATH, {**self.base, "op": "count", "filter": self.filter})
        return agg_total(envelope.get("result") or {})

    def count_settled(self, since: float) -> int:
        """The count, once the index can be trusted to hold what was written before ``since``.

        The index shows a write about 20 s after it (``settle``, default 30 s, bounds that): a
        count of 0 made sooner after ``since`` (the time the delete was asked for; a load that
        just failed wrote its rows before it) may miss rows written just before. Then wait
        until ``since + settle`` and count again. A count above 0 needs no wait: the index
        applies writes in order, so once a pass's deletes are applied (the pass waits for
        that), so are the rows written before them, and the next count finds them.
        """
        matched = self.count()
        settle = self.settle_seconds
        wait = since + settle - time.time()
        if matched or wait <= 0:
            return matched
        self.log.info(
            "No record of index %r matches the filter yet; records written in the %g s before this "
            "delete was asked for may not be indexed yet (the index lags the collection): counting "
            "again in %.1f s (settle).",
            self.index_name,
            settle,
            wait,
        )
        self.sleep(wait)
        return self.count()

    def pager(self, first_pass: bool = True) -> ScalarPager | OffsetPager:
        # Later passes look for leftovers on an index that has applied every delete: a
        # random search finds them whatever they hold (even records without the sort field).
        if self.sort_field and first_pass:
            return ScalarPager(self.send, self.base, self.filter, self.sort_field, self.page_size)
        return OffsetPager(self.send, self.base, self.filter, self.page_size)

    def newest(self, field: str) -> float | None:
        """The largest value of ``field`` (int64 or float32, scalar-indexed) among the matches."""
        body = {
            **self.base,
            "field": field,
            "order": "desc",
            "filter": self.filter,
            "limit": 1,
            "output_fields": [],
        }
        data, _ = _data(self.send(SEARCH_SCALAR_PATH, body))
        score = data[0].get("score") if data else None
        return float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None

    def sample(self, size: int = SAMPLE_SIZE) -> list[Any]:
        """Up to ``size`` matching ids (for a dry run's log)."""
        pager = self.pager()
        pager.page_size = min(size, self.page_size)
        for ids in pager:
            return ids[:size]
        return []

    # ---- the run ----

    def run(self, matched: int | None = None) -> FilterDeleteResult:
        """Delete everything that matches, pass after pass, until a verified count is 0.

        ``matched``: the count made before (``count()``), for the summary. Raises
        ``FilterDeleteError`` (with ``result``) when a search or delete fails, when
        ``max_delete`` would be passed, or when records still match after ``max_passes``.
        """
        result = self.result
        result.matched = matched
        self._began = time.monotonic()
        try:
            return self._passes()
        except VikingDBError:
            raise
        except BaseException as exc:
            # Interrupted from outside (Airflow's execution timeout, SIGTERM), or stopped by a
            # callback's error (a receipt that can no longer be written): the batch pool has said
            # what the page in progress did; this says where the whole delete stood.
            self.log.error("%s", self._interrupted(exc))
            raise

    def _deleted(self) -> str:
        """``300 ids of the 3000 that matched at the start deleted``: where the whole delete stands."""
        result = self.result
        matched = "" if result.matched is None else f" of the {result.matched} that matched at the start"
        return f"{result.ids_deleted} ids{matched} deleted"

    def _interrupted(self, exc: BaseException) -> str:
        result = self.result
        done = self._deleted()
        if self._phase.startswith("deleting"):
            done += " in the pages before it (the line above says what was acknowledged of this one)"
        how = "stopped" if isinstance(exc, Exception) else "interrupted"  # an error, or a timeout/kill
        return (
            f"Delete by filter of {result.target} {how} ({type(exc).__name__}) while "
            f"{self._phase}: {done}. Deletes are idempotent: a re-run of this run (the same cutoff) "
            "deletes what is left and verifies it."
        )

    def _so_far(self) -> str:
        """Where the whole delete stands, for its progress lines."""
        elapsed = time.monotonic() - self._began
        return f"{self._deleted()} in pass {self.result.passes}, {elapsed:.1f}s since it started"

    def _passes(self) -> FilterDeleteResult:
        result = self.result
        for number in range(1, self.max_passes + 1):
            result.passes = number
            started = time.monotonic()
            last_ids, deleted_at = self._one_pass(self.pager(first_pass=number == 1))
            result.delete_seconds += time.monotonic() - started
            started = time.monotonic()
            if last_ids:
                self._phase = (
                    f"waiting for index {self.index_name!r} to apply pass {number}'s deletes "
                    "(all of them acknowledged)"
                )
                self._wait_for_index(last_ids, deleted_at)
            self._phase = f"counting what still matches after pass {number} (its deletes acknowledged)"
            remaining = self._guarded(self.count, "counting what still matches")
            result.verify_seconds += time.monotonic() - started
            result.remaining = remaining
            if remaining == 0:
                self.log.info(
                    "Deleted by filter: %s; verified: no record of index %r matches the filter any more.",
                    result.progress(),
                    self.index_name,
                )
                return result
            if number < self.max_passes:
                self.log.info(
                    "Pass %d done (%s); %d records still match in index %r: another pass.",
                    number,
                    result.progress(),
                    remaining,
                    self.index_name,
                )
        raise FilterDeleteError(
            f"{result.remaining} records of index {self.index_name!r} still match the filter after "
            f"{self.max_passes} passes, each ended after the index had applied its deletes "
            f"({result.progress()}). "
            "Records that match keep arriving, or the index does not apply the deletes; run again, or "
            "raise max_passes",
            result,
            retryable=True,
        )

    def _guarded(self, call: Callable[[], Any], what: str) -> Any:
        try:
            return call()
        except FilterDeleteError:
            raise
        except VikingDBError as exc:
            raise FilterDeleteError(
                f"{what} failed: {end_sentence(str(exc))} {self.result.stopped()}", self.result, exc
            ) from exc

    def _one_pass(self, pager: ScalarPager | OffsetPager) -> tuple[list[Any], float]:
        """Search in a producer thread, delete here; returns the last page's ids and when it was deleted."""
        # One page searched ahead, one being deleted; None: the search is over (pages are lists).
        pages: queue.Queue[list[Any] | None] = queue.Queue(maxsize=1)
        stop = threading.Event()
        failure: list[BaseException] = []

        def produce() -> None:
            try:
                for ids in pager:
                    while not stop.is_set():
                        try:
                            pages.put(ids, timeout=0.2)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
            except BaseException as exc:  # handed to the deleting thread, raised there
                failure.append(exc)
            finally:
                while not stop.is_set():
                    try:
                        pages.put(None, timeout=0.2)
                        break
                    except queue.Full:
                        continue

        producer = threading.Thread(target=produce, name="vikingdb-filter-search", daemon=True)
        producer.start()
        last_ids: list[Any] = []
        deleted_at = time.time()
        try:
            while True:
                self._phase = f"searching for page {self.result.pages + 1}"
                ids = pages.get()
                if ids is None:
                    break
                self._check_cap(len(ids))
                self.result.pages += 1
                self._phase = f"deleting page {self.result.pages} ({len(ids)} ids)"
                unknown_before = self.result.ids_unknown
                try:
                    batch = self.delete(ids, on_batch=self.on_batch, on_unknown=self._unknown)
                except VikingDBError as exc:
                    done = getattr(exc, "result", None)
                    if done is not None:
                        self.result.add(done)
                    # the page's ids neither acknowledged nor of unknown outcome: refused, or never sent
                    self.result.ids_refused += max(
                        len(ids)
                        - (done.ids_done if done is not None else 0)
                        - (self.result.ids_unknown - unknown_before),
                        0,
                    )
                    raise FilterDeleteError(
                        f"deleting page {self.result.pages} ({plural(len(ids), 'id')}) failed: "
                        f"{end_sentence(str(exc))} "
                        f"{self.result.stopped()}",
                        self.result,
                        exc,
                    ) from exc
                self.result.add(batch)
                deleted_at = self.result.deleted_at = time.time()
                last_ids = ids
                self.log.info("Delete by filter: page %d done: %s.", self.result.pages, self._so_far())
        finally:
            stop.set()
            producer.join(timeout=5)
            self.result.searches += pager.searches
        if failure:
            error = failure[0]
            if isinstance(error, VikingDBError):
                raise FilterDeleteError(
                    f"searching index {self.index_name!r} failed: {end_sentence(str(error))} "
                    f"{self.result.stopped()}",
                    self.result,
                    error,
                ) from error
            raise error
        return last_ids, deleted_at

    def _unknown(self, ids: Sequence[Any], error: VikingDBError | None) -> None:
        """A delete batch whose outcome is unknown: counted, then passed on to ``on_unknown``."""
        self.result.ids_unknown += len(ids)
        if self.on_unknown is not None:
            self.on_unknown(ids, error)

    def _check_cap(self, page: int) -> None:
        if self.max_delete is not None and self.result.ids_deleted + page > self.max_delete:
            raise FilterDeleteError(
                f"the next page would take the delete to {self.result.ids_deleted + page} records, more than "
                f"max_delete={self.max_delete} (records matching the filter arrived after the count?). "
                f"Stopped. {self.result.stopped()}",
                self.result,
            )

    def _wait_for_index(self, last_ids: list[Any], deleted_at: float) -> None:
        """Until the index has applied the pass's deletes: the last page's ids, seen there, are gone.

        The index applies changes in write order, so once the last deleted ids are gone
        from it, every earlier delete is applied too; ``settle`` seconds after the delete
        absence counts as proof anyway.
        """
        checked, _ = choose_ids_to_check(last_ids, self.max_checked_ids)
        check = _IndexSyncCheck(
            self.target,
            self.index_name,
            checked,
            deleted_at=deleted_at,
            settle=self.settle,
            seen=checked,  # the search returned them: they were in the index
        )
        deadline = time.time() + self.verify_timeout
        synced = self._guarded(
            lambda: wait_blocking(
                check,
                self.send,
                deadline=deadline,
                poke_interval=self.poke_interval,
                log=self.log,
                sleep=self.sleep,
            ),
            f"waiting for index {self.index_name!r}",
        )
        if not synced:
            raise FilterDeleteError(
                f"index {self.index_name!r} did not apply the deletes within {self.verify_timeout:g}s: "
                f"{check.pending_text()}. {self.result.stopped()}; nothing was verified",
                self.result,
                retryable=True,
            )
        self.result.index_proof = check.proof
