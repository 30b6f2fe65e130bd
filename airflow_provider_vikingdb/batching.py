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
- what was done is one byte per batch: nothing holds a second copy of the ids.

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
    next_step,
    outcome_text,
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

    Each worker (the calling thread is one) takes the next batch, sends it (retries
    included) and comes back for another. ``send(batch, cancel)`` returns the envelope
    or raises ``VikingDBError``; ``on_batch(batch, envelope)`` runs (under the lock) for
    each acknowledged batch. Raises ``VikingDBBatchError`` when a batch failed for good.
    When the call stops (a failure or an interruption), ``on_unknown(batch, error)`` runs
    for each batch whose outcome is unknown, before the error goes on up.
    """
    total = -(-len(items) // batch_size)
    if result is None:
        result = BatchResult(target=target, action=action)
    result.ids_requested, result.batches_total = len(items), total
    if not items:
        log.info("VikingDB %s on %s: no ids given, nothing sent", action, target)
        return result
    lock = threading.Lock()
    source = enumerate(batched(items, batch_size))
    done = bytearray(total)  # done[n]: batch n + 1 is _NEW, _DONE or _TAKEN
    failed: dict[int, VikingDBError] = {}
    cancel = Cancel()
    started = time.monotonic()
    last_report = [started]
    caller = threading.current_thread()

    reported = [False]  # the interrupted call has said what it did: nothing may change that now

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
            # The receipt line first: an interrupt that lands in between leaves the batch taken,
            # so it is reported as unknown, never as acknowledged without its line.
            if on_batch is not None:
                on_batch(batch, envelope)
            done[number] = _DONE
            result.batches += 1
            result.ids_done += len(batch)
            result.request_ids.append(envelope.get("request_id") or "")
        return True

    def work() -> None:
        while not cancel.is_set():
            with lock:
                if failed:
                    return
                number, batch = next(source, (None, None))
            if batch is None or number is None:
                return
            if not one(number, batch):
                return
            if threading.current_thread() is caller and time.monotonic() - last_report[0] >= REPORT_EVERY:
                last_report[0] = time.monotonic()
                report(log, action, result, started)
                if on_progress:
                    on_progress(result)

    helpers: list[threading.Thread] = []
    finished = False
    try:
        # The first batch goes alone: if it is refused, nothing else was sent.
        first_number, first_batch = next(source)
        if one(first_number, first_batch) and total > 1:
            helpers = [
                threading.Thread(target=work, name=f"vikingdb-{action}-{n}", daemon=True)
                for n in range(1, min(concurrency, total))
            ]
            for helper in helpers:
                helper.start()
            work()
            for helper in helpers:  # in the try: an interrupt while joining is still reported
                helper.join()
        finished = True
    finally:
        if not finished:
            # Interrupted (an exception from outside: Airflow's timeout, SIGTERM): stop
            # everything, wait briefly for the workers, say what was and was not done.
            cancel.set()
            deadline = time.monotonic() + INTERRUPT_GRACE
            for helper in helpers:
                if helper.ident is not None:  # started (the interrupt may come while starting them)
                    helper.join(max(deadline - time.monotonic(), 0))
            with lock:
                reported[0] = True
                # Taken and not ended: in flight when interrupted (the caller's own batch, a
                # worker still stopping), so it may have been applied.
                unknown = {n for n in range(total) if done[n] == _TAKEN and n + 1 not in failed}
                unknown |= _lost(failed)
                outcomes = split_outcomes(items, batch_size, done, unknown, keys)
                tell_unknown(items, batch_size, unknown, failed, on_unknown, log)
            log.error(
                "VikingDB %s on %s interrupted: %s Nothing more will be sent. %s",
                action,
                target,
                outcome_text(
                    action,
                    done=len(outcomes[0]),
                    requested=len(items),
                    batches=result.batches,
                    batches_total=total,
                    unknown=outcomes[1],
                    not_done=outcomes[2],
                    unknown_why="in flight when interrupted: the service may have applied them",
                ),
                next_step(action, retry_helps=True),
            )

    if failed:
        unknown = _lost(failed)
        done_keys, unknown_keys, not_done = split_outcomes(items, batch_size, done, unknown, keys)
        tell_unknown(items, batch_size, unknown, failed, on_unknown, log)
        cause = failed[stopping_cause(failed)]
        raise VikingDBBatchError(
            cause,
            action=action,
            result=result,
            failed_batches=sorted(failed),
            done_ids=done_keys,
            unknown_ids=unknown_keys,
            not_done_ids=not_done,
            failures=failed,
        ) from cause
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
) -> None:
    """``on_unknown(batch, error)`` for each batch whose outcome is unknown, in batch order.

    Runs while the call is stopping: a callback that fails is logged, never raised over the
    error (or the interruption) that stopped the call.
    """
    if on_unknown is None or not unknown:
        return
    for number, batch in enumerate(batched(items, batch_size)):
        if number in unknown:
            try:
                on_unknown(batch, failed.get(number + 1))
            except Exception as exc:
                log.error("on_unknown for batch %d failed: %s: %s", number + 1, type(exc).__name__, exc)


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
