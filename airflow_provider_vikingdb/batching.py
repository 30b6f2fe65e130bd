"""Batched calls: ``BatchResult`` (what was done) and the worker pool that sends the batches.

Rules a batched call keeps, whatever happens:
- the first batch goes alone: a wrong collection, wrong credentials or a rejected id
  type cost exactly one request, not ``max_concurrency``;
- after a permanent error no worker takes a new batch; those in flight finish;
- when the caller is interrupted (Airflow's execution timeout, SIGTERM), no new batch
  starts, no retry is made, requests in flight are abandoned, and the log says how many
  ids were done and which were not, before the interruption goes on up;
- what happened is said three ways, wherever it is reported: acknowledged; outcome unknown
  (the batch was sent and its answer was lost, timed out or abandoned: the service may have
  applied it; ``VikingDBError.maybe_applied``); not done (refused, or never sent);
- what was done is one byte per batch: nothing holds a second copy of the ids;
- workers send every batch and write its receipt line; the caller's thread only waits, so an
  interruption (raised in that thread) never comes between a batch's answer and its record;
- a callback that raises (the receipt cannot be written) stops the call like an interruption,
  and its error goes on up.

Pure threading, no HTTP: ``send(batch, cancel)`` is the hook's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from airflow_provider_vikingdb.deadline import Cancel
from airflow_provider_vikingdb.exceptions import (
    VikingDBBatchError,
    VikingDBError,
    VikingDBInterruptedError,
    next_step,
    outcome_text,
    plural,
    retry_helps,
    stopping_cause,
)
from airflow_provider_vikingdb.ids import batched

#: seconds the caller waits for workers to notice an interruption before it goes on
INTERRUPT_GRACE = 1.0
#: a progress line every this many seconds
REPORT_EVERY = 10.0

_counters = threading.Lock()  # retry counters: bumped rarely, from any worker


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

    def count(self, *, throttled: int = 0, retries: int = 0) -> None:
        """Retry counters, bumped from several threads."""
        with _counters:
            self.throttled += throttled
            self.retries += retries

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("request_ids")
        data[f"ids_{'deleted' if self.action == 'delete' else 'written'}"] = data.pop("ids_done")
        data["last_request_id"] = self.request_ids[-1] if self.request_ids else None
        return data


Send = Callable[[Sequence[Any], Cancel], dict[str, Any]]
#: the primary keys of a batch's items (for a delete, the batch itself)
Keys = Callable[[Sequence[Any]], list[str | int]]
#: ``on_unknown(batch, error)``: a batch whose outcome is unknown, with the error that ended it
#: (None: it was in flight when the caller was interrupted)
OnUnknown = Callable[[Sequence[Any], VikingDBError | None], None]

#: a batch's state: not taken yet, acknowledged, taken by a worker (being sent, or failed)
_NEW, _DONE, _TAKEN = 0, 1, 2


def run_batches(
    *,
    action: str,
    target: str,
    items: Sequence[Any],
    batch_size: int,
    concurrency: int,
    send: Send,
    keys: Keys,
    log: Any,
    on_batch: Callable[[Sequence[Any], dict[str, Any]], None] | None = None,
    on_progress: Callable[[BatchResult], None] | None = None,
    result: BatchResult | None = None,
    on_unknown: OnUnknown | None = None,
) -> BatchResult:
    """Send ``items`` in batches with up to ``concurrency`` requests in flight.

    Each worker thread takes the next batch, sends it (retries included) and comes back for
    another; the calling thread waits for them and logs the progress. ``send(batch, cancel)``
    returns the envelope or raises ``VikingDBError``; ``on_batch(batch, envelope)`` runs (in
    the worker, under the lock) for each acknowledged batch. Raises ``VikingDBBatchError`` when
    a batch failed for good. When the call stops (a failure, an interruption, or an
    ``on_batch`` that raised), ``on_unknown(batch, error)`` runs for each batch whose outcome
    is unknown, before the error goes on up.
    """
    total = -(-len(items) // batch_size)
    if result is None:
        result = BatchResult(target=target, action=action)
    # A result passed in (a streamed upsert runs one call per chunk) counts on from where it
    # stood, so its progress lines read "160/200 ids in 16/20 batches", never "160/40 ... 16/4".
    result.ids_requested += len(items)
    result.batches_total += total
    if not items:
        log.info("VikingDB %s on %s: no ids given, nothing sent", action, target)
        return result
    lock = threading.Lock()
    source = enumerate(batched(items, batch_size))
    done = bytearray(total)  # done[n]: batch n + 1 is _NEW, _DONE or _TAKEN
    failed: dict[int, VikingDBError] = {}
    #: what broke a worker other than a VikingDBError (a callback that raised: the receipt
    #: could not be written): the call stops and it goes up
    broken: list[BaseException] = []
    cancel = Cancel()
    started = time.monotonic()
    #: what ``result`` held before this call (a streamed upsert runs one call per chunk)
    earlier_ids, earlier_batches = result.ids_done, result.batches
    reported = [False]  # the interrupted call has said what it did: nothing may change that now
    told: set[int] = set()  # the batches on_unknown has heard of: each hears once
    #: a batch failed for good: the error, made inside the ``try`` below, raised after it
    failure: VikingDBBatchError | None = None

    def one(number: int, batch: Sequence[Any]) -> bool:
        with lock:
            done[number] = _TAKEN
        try:
            envelope = send(batch, cancel)
        except VikingDBError as exc:
            with lock:
                failed[number + 1] = exc
            return False
        with lock:
            if reported[0]:
                # Answered after the interrupted call reported this batch as outcome unknown (and
                # its receipt was closed): it stays that, so the report and the receipt agree.
                return False
            # The receipt line, then the count, in one step under the lock: the interrupted
            # call's report (which takes the lock) sees both or neither. A callback that raises
            # leaves the batch taken: reported as outcome unknown.
            if on_batch is not None:
                on_batch(batch, envelope)
            done[number] = _DONE
            result.batches += 1
            result.ids_done += len(batch)
            result.request_ids.append(envelope.get("request_id") or "")
        return True

    def work(first: bool, ended: threading.Event) -> None:
        try:
            if cancel.is_set():  # interrupted while this thread was being started
                return
            if first:
                one(*next(source))
                return
            while not cancel.is_set():
                with lock:
                    if failed or broken:
                        return
                    number, batch = next(source, (None, None))
                if batch is None or number is None or not one(number, batch):
                    return
        except BaseException as exc:  # not the service's answer: a callback (or a bug) broke
            with lock:
                broken.append(exc)
            cancel.set()
        finally:
            ended.set()

    # Every batch is sent, and its receipt line written, by a worker thread; this (the caller's)
    # thread only waits. Airflow's execution timeout and SIGTERM raise in this thread, between
    # any two bytecodes: here they can only land in the wait, never between a batch's answer and
    # its record. (The caller used to send batches too, and a signal there split the two.)
    # It waits on each worker's own Event, not on Thread.join: CPython 3.11's join, interrupted
    # by a signal handler's exception, marks the thread it waited for as stopped while it runs
    # on, and a later join returns at once (so the report came before the worker had stopped).
    threads: list[tuple[threading.Thread, threading.Event]] = []

    def start(count: int, first: bool = False) -> None:
        for _ in range(count):
            ended = threading.Event()
            thread = threading.Thread(
                target=work, args=(first, ended), name=f"vikingdb-{action}-{len(threads)}", daemon=True
            )
            threads.append((thread, ended))
            thread.start()

    def wait() -> None:
        last_report = time.monotonic()
        for _, ended in threads:
            while not ended.wait(max(last_report + REPORT_EVERY - time.monotonic(), 0.01)):
                if time.monotonic() - last_report >= REPORT_EVERY:
                    last_report = time.monotonic()
                    report(log, action, result, started)
                    if on_progress:
                        on_progress(result)

    try:
        # The first batch goes alone: if it is refused, nothing else was sent.
        start(1, first=True)
        wait()
        if done[0] == _DONE and total > 1:
            start(min(concurrency, total - 1))
            wait()
        if broken:
            raise broken[0]
        if failed:
            # Inside the try: an interruption while on_unknown hears of these, or while their ids
            # are sorted out (keys() over every batch), goes to the report below, which tells it of
            # the rest (and says what was done).
            unknown = _lost(failed)
            tell_unknown(items, batch_size, unknown, failed, on_unknown, log, told)
            done_keys, unknown_keys, not_done = split_outcomes(items, batch_size, done, unknown, keys)
            failure = VikingDBBatchError(
                failed[stopping_cause(failed)],
                action=action,
                result=result,
                failed_batches=sorted(failed),
                done_ids=done_keys,
                unknown_ids=unknown_keys,
                not_done_ids=not_done,
                failures=failed,
            )
    except BaseException as stop:
        # Interrupted (Airflow's timeout, SIGTERM), or a callback broke: stop everything, wait
        # briefly for the workers, say what was and was not done, and let it go on up.
        try:
            cancel.set()
            deadline = time.monotonic() + INTERRUPT_GRACE
            for thread, ended in threads:
                if thread.ident is not None:  # started (the interrupt may come while starting them)
                    ended.wait(max(deadline - time.monotonic(), 0))
        except BaseException as again:
            # Interrupted again while waiting (the execution timeout just after a SIGTERM): the
            # report is still due, and without it a worker would record a late answer after the
            # call has raised. Stop waiting; what is still in flight is outcome unknown.
            cancel.set()
            log.warning(
                "VikingDB %s on %s: interrupted again (%s) while its workers stop: reporting now",
                action,
                target,
                type(again).__name__,
            )
        with lock:
            reported[0] = True
            # Taken and not ended: in flight when interrupted (a worker still stopping), so it
            # may have been applied.
            unknown = {n for n in range(total) if done[n] == _TAKEN and n + 1 not in failed}
            unknown |= _lost(failed)
            outcomes = split_outcomes(items, batch_size, done, unknown, keys)
            # A batch the interruption cut off in flight is told with no error (None), as the
            # callback's contract says: "in flight when interrupted".
            errors = {n: e for n, e in failed.items() if not isinstance(e, VikingDBInterruptedError)}
            tell_unknown(items, batch_size, unknown, errors, on_unknown, log, told, stopping=True)
        interrupted = not isinstance(stop, Exception)
        # A batch may also have failed for good meanwhile (a 400 beside a full receipt store): say
        # which, and let it decide whether another try can help.
        also = stopping_cause(errors) if errors else None
        log.error(
            "VikingDB %s on %s %s: %s Nothing more will be sent. %s",
            action,
            target,
            "interrupted" if interrupted else f"stopped by {type(stop).__name__}",
            outcome_text(
                action,
                done=len(outcomes[0]),
                requested=len(items),
                batches=done.count(_DONE),
                batches_total=total,
                unknown=outcomes[1],
                not_done=outcomes[2],
                unknown_why=(
                    f"in flight when {'interrupted' if interrupted else 'stopped'}: "
                    "the service may have applied them"
                ),
            )
            + (
                f" Before these {plural(len(items), 'id')}, {plural(earlier_ids, 'id')} "
                f"{'was' if earlier_ids == 1 else 'were'} acknowledged in {plural(earlier_batches, 'batch')}."
                if earlier_batches
                else ""
            ),
            next_step(action, retry_helps=also is None or retry_helps(errors[also])),
        )
        if also is not None:
            log.error(
                "VikingDB %s on %s: batch %d of %d had failed too: %s",
                action,
                target,
                also,
                total,
                errors[also],
            )
        raise

    if failure is not None:
        raise failure from failure.cause
    report(log, action, result, started)
    return result


def _lost(failed: dict[int, VikingDBError]) -> set[int]:
    """The 0-based numbers of the failed batches whose answer was lost: they may have been applied."""
    return {number - 1 for number, exc in failed.items() if exc.maybe_applied}


def split_outcomes(
    items: Sequence[Any], batch_size: int, done: bytearray, unknown: set[int], keys: Keys
) -> tuple[list[str | int], list[str | int], list[str | int]]:
    """The keys of acknowledged batches, of batches whose outcome is unknown (0-based numbers in
    ``unknown``), and of all the others (refused, or never sent)."""
    done_keys: list[str | int] = []
    unknown_keys: list[str | int] = []
    not_done: list[str | int] = []
    for number, batch in enumerate(batched(items, batch_size)):
        if done[number] == _DONE:
            done_keys.extend(keys(batch))
        elif number in unknown:
            unknown_keys.extend(keys(batch))
        else:
            not_done.extend(keys(batch))
    return done_keys, unknown_keys, not_done


def tell_unknown(
    items: Sequence[Any],
    batch_size: int,
    unknown: set[int],
    failed: dict[int, VikingDBError],
    on_unknown: OnUnknown | None,
    log: Any,
    told: set[int],
    *,
    stopping: bool = False,
) -> None:
    """``on_unknown(batch, error)`` for each batch whose outcome is unknown, in batch order, but
    those in ``told`` (0-based numbers), which it adds to.

    Runs while the call is stopping: a callback that fails is logged, never raised over the
    error that stopped the call. A batch is told at most once: it goes into ``told`` once its
    callback was called, however that ended, so a call interrupted while telling (that goes up to
    the report, which tells the rest) does not tell it twice (a receipt would count its ids twice).
    Not before: a signal's handler can run as soon as a call returns, and an interruption just
    after the batch went in would have left it untold. When ``stopping`` (the report of an
    interrupted call), a further interruption inside a callback is logged too, and the other
    batches are still told.
    """
    if on_unknown is None or not unknown:
        return
    for number, batch in enumerate(batched(items, batch_size)):
        if number in unknown and number not in told:
            error = failed.get(number + 1)
            try:
                on_unknown(batch, error)
            except Exception as exc:
                log.error("on_unknown for batch %d failed: %s: %s", number + 1, type(exc).__name__, exc)
            except BaseException as again:
                if not stopping:
                    raise
                log.warning(
                    "on_unknown for batch %d interrupted again (%s): telling the others",
                    number + 1,
                    type(again).__name__,
                )
            finally:
                # Here, not before the call: an interruption that lands first leaves it to the report.
                told.add(number)


def report(log: Any, action: str, result: BatchResult, started: float) -> None:
    elapsed = max(time.monotonic() - started, 1e-9)
    log.info(
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
