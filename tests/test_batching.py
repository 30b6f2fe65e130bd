"""The batch pool's report when the task is interrupted: what it says stays true afterwards.

Airflow's execution timeout and SIGTERM reach a task as a signal whose handler raises in the
main thread; these tests interrupt the pool the same way, from a worker, at chosen moments.
"""

from __future__ import annotations

import contextlib
import dis
import logging
import sys
import threading
from collections.abc import Callable, Iterator

import pytest

from airflow_provider_vikingdb import batching
from airflow_provider_vikingdb.batching import run_batches
from airflow_provider_vikingdb.exceptions import (
    VikingDBConnectionError,
    VikingDBError,
    VikingDBInterruptedError,
)
from tests.conftest import Interrupted


def run_pool(send, **kwargs):
    """``run_batches`` deleting the ints 0..29 in batches of 10 (batch n holds 10(n-1)..10n-1)."""
    options = {"concurrency": 2, "keys": list, "log": logging.getLogger("test")} | kwargs
    return run_batches(
        action="delete", target="collection 'c'", items=list(range(30)), batch_size=10, send=send, **options
    )


def join_workers() -> None:
    for thread in threading.enumerate():
        if thread.name.startswith("vikingdb-delete-"):
            thread.join(10)


def test_a_batch_answered_after_the_interrupt_report_stays_unknown_and_gets_no_receipt_line(
    monkeypatch, interrupt
):
    # A worker's answer that comes back after the interrupted call has reported (and its receipt
    # was closed) must not turn into an acknowledged batch: the receipt would name its ids twice,
    # or be written to after it was closed.
    monkeypatch.setattr(batching, "INTERRUPT_GRACE", 0.1)
    both_sending, release = threading.Barrier(2), threading.Event()
    acknowledged, unknown = [], []

    def send(batch, cancel):
        number = batch[0] // 10 + 1
        if number == 1:
            return {"request_id": "r1"}
        if both_sending.wait(10) == 0:
            interrupt()  # the task is stopped while batches 2 and 3 are in flight
        assert release.wait(10)  # answered only once the report is made
        return {"request_id": f"r{number}"}

    with pytest.raises(Interrupted):
        run_pool(
            send,
            on_batch=lambda batch, envelope: acknowledged.append(list(batch)),
            on_unknown=lambda batch, error: unknown.append(list(batch)),
        )
    reported = (sorted(map(tuple, acknowledged)), sorted(map(tuple, unknown)))
    release.set()
    join_workers()
    # batch 1 acknowledged; 2 and 3 in flight when stopped: unknown, and nothing changed after
    assert acknowledged == [list(range(10))]
    assert sorted(unknown) == [list(range(10, 20)), list(range(20, 30))]
    assert (sorted(map(tuple, acknowledged)), sorted(map(tuple, unknown))) == reported


def test_an_interrupt_during_the_receipt_write_waits_for_it_and_reports_that_batch_acknowledged(
    interrupt, caplog
):
    # The signal lands while batch 2's receipt line is being written. The interruption cannot
    # split the line from the count (the CI once saw a receipt with 300 ids acknowledged and a
    # log saying 200): the report waits for the write, and both say batch 2 was done.
    lines, told_unknown, cancels = [], [], []

    def send(batch, cancel):
        cancels.append(cancel)
        return {"request_id": f"r{batch[0]}"}

    def on_batch(batch, envelope):
        if batch[0] == 10:
            assert interrupt().wait(10)  # the main thread is now in its except block...
            assert cancels[-1].wait(10)  # ...and has cancelled: no batch 3
        lines.append(list(batch))

    with pytest.raises(Interrupted), caplog.at_level(logging.INFO, logger="test"):
        run_pool(send, concurrency=1, on_batch=on_batch, on_unknown=lambda b, e: told_unknown.append(list(b)))
    join_workers()
    assert lines == [list(range(10)), list(range(10, 20))]
    assert told_unknown == []
    assert "interrupted: 20 of 30 ids acknowledged in 2 of 3 batches; outcome unknown: 0 ids" in caplog.text
    assert "not deleted (refused, or never sent): 10 ids (first: 20," in caplog.text


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_callback_that_breaks_in_a_worker_stops_the_call_and_its_error_goes_up(concurrency, caplog):
    # The receipt cannot be written for batch 2 (the disk is full): the call must not go on as if
    # it had been, nor end as a success. Batch 2 was applied without its line: outcome unknown.
    lines, told_unknown = [], []
    batch_3_sent = threading.Event()

    def send(batch, cancel):
        if batch[0] >= 20:  # batch 3 (with 3 workers, in flight beside batch 2) is abandoned
            batch_3_sent.set()
            assert cancel.wait(10)
            raise VikingDBInterruptedError(in_flight=True)
        if batch[0] == 10 and concurrency == 3:
            assert batch_3_sent.wait(10)
        return {"request_id": "r"}

    def on_batch(batch, envelope):
        if batch[0] == 10:
            raise OSError(28, "No space left on device")
        lines.append(list(batch))

    with pytest.raises(OSError, match="No space left"), caplog.at_level(logging.INFO, logger="test"):
        run_pool(
            send,
            concurrency=concurrency,
            on_batch=on_batch,
            on_unknown=lambda batch, error: told_unknown.append(list(batch)),
        )
    join_workers()
    assert lines == [list(range(10))]
    # batch 2 applied without its line, and (3 workers) batch 3 abandoned in flight: both unknown
    assert told_unknown == [list(range(10, 20))] + ([list(range(20, 30))] if concurrency == 3 else [])
    assert "stopped by OSError: 10 of 30 ids acknowledged in 1 of 3 batches" in caplog.text
    assert "success" not in caplog.text.lower()


def test_a_second_interrupt_while_the_call_waits_for_its_workers_still_gets_the_report(interrupt, caplog):
    # SIGTERM stops the task and its execution timeout fires a moment later, while the call waits
    # (up to INTERRUPT_GRACE) for its workers: the report must still be made, and batch 2, in
    # flight, must stay outcome unknown. Else nothing says what was done, on_unknown never hears
    # of batch 2 (a receipt calls it not deleted, an upsert's written_ids leaves it out), and its
    # answer, coming after the call has raised, is recorded as acknowledged (a receipt line after
    # the receipt was closed).
    release = threading.Event()
    acknowledged, unknown = [], []

    def send(batch, cancel):
        if batch[0] == 0:
            return {"request_id": "r1"}
        handled = interrupt()  # SIGTERM while batch 2 is in flight
        assert handled.wait(10)
        assert cancel.wait(10)  # the call is in its except block, waiting for this worker
        handled.clear()
        assert interrupt().wait(10)  # the execution timeout
        assert release.wait(10)  # answered only once the call has raised
        return {"request_id": "r2"}

    with pytest.raises(Interrupted), caplog.at_level(logging.INFO, logger="test"):
        run_pool(
            send,
            concurrency=1,
            on_batch=lambda batch, envelope: acknowledged.append(list(batch)),
            on_unknown=lambda batch, error: unknown.append(list(batch)),
        )
    release.set()
    join_workers()
    assert acknowledged == [list(range(10))]
    assert unknown == [list(range(10, 20))]
    assert "interrupted: 10 of 30 ids acknowledged in 1 of 3 batches; outcome unknown: 10 ids" in caplog.text


def test_a_batch_that_failed_for_good_beside_a_broken_callback_is_named_and_decides_the_next_step(caplog):
    # Batch 2's receipt line cannot be written while batch 3 is refused (a 400): the call stops
    # with the store's error, and the log must still name the refusal, and not promise that a
    # retry finishes the job (it would be refused again).
    refused = VikingDBError("field v is bad", code="InvalidParameter", http_status=400, request_id="rq-3")
    batch_3_sent = threading.Event()

    def send(batch, cancel):
        if batch[0] == 20:
            batch_3_sent.set()
            raise refused
        if batch[0] == 10:
            assert batch_3_sent.wait(10)
        return {"request_id": "r"}

    def on_batch(batch, envelope):
        if batch[0] == 10:
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError), caplog.at_level(logging.INFO, logger="test"):
        run_pool(send, concurrency=3, on_batch=on_batch)
    join_workers()
    assert "stopped by OSError: 10 of 30 ids acknowledged in 1 of 3 batches" in caplog.text
    assert "batch 3 of 3 had failed too: " + str(refused) in caplog.text
    assert "Fix the cause above, then clear the task" in caplog.text
    assert "sends all of them again, those already applied included, and finishes" not in caplog.text


def lost_answer(number: int) -> VikingDBError:
    """A batch whose answer timed out after the hook's retries: it may have been applied."""
    return VikingDBConnectionError(f"read timed out (batch {number})", code="Timeout")


def later_batches_time_out():
    """A ``send`` that acknowledges batch 1 and lets batches 2 and 3 time out for good (outcome
    unknown), both sent before either fails."""
    both_sent = threading.Barrier(2, timeout=10)

    def send(batch, cancel):
        if batch[0] == 0:
            return {"request_id": "r1"}
        both_sent.wait()
        raise lost_answer(batch[0] // 10 + 1)

    return send


def test_an_interrupt_while_a_failed_call_tells_its_unknown_batches_still_tells_each_once_and_reports(
    interrupt, caplog
):
    # Batches 2 and 3 time out for good (outcome unknown). While the call tells on_unknown of
    # batch 2 (a receipt line, an upsert's written_ids), SIGTERM arrives. Before, the interruption
    # went straight up: batch 3 was never told (a rollback from written_ids left it behind) and no
    # line said what was done.
    send = later_batches_time_out()

    told = []

    def on_unknown(batch, error):
        told.append((list(batch), type(error).__name__))
        if len(told) == 1:
            assert interrupt().wait(10)

    with pytest.raises(Interrupted), caplog.at_level(logging.INFO, logger="test"):
        run_pool(send, concurrency=2, on_unknown=on_unknown)
    join_workers()
    assert told == [
        (list(range(10, 20)), "VikingDBConnectionError"),
        (list(range(20, 30)), "VikingDBConnectionError"),
    ]
    assert "interrupted: 10 of 30 ids acknowledged in 1 of 3 batches; outcome unknown: 20 ids" in caplog.text
    assert "had failed too: " in caplog.text


def test_an_interrupt_inside_on_unknown_while_the_call_reports_does_not_keep_the_other_batches_untold(
    interrupt, caplog
):
    # SIGTERM stops the call with batches 2 and 3 in flight; the execution timeout lands while the
    # report tells on_unknown of batch 2. Batch 3 must still be told, and the report made.
    release = threading.Event()
    both_sent = threading.Barrier(2, timeout=10)
    told = []

    def send(batch, cancel):
        if batch[0] == 0:
            return {"request_id": "r1"}
        if both_sent.wait() == 0:
            assert interrupt().wait(10)  # SIGTERM while batches 2 and 3 are in flight
        assert release.wait(10)  # answered only after the call has raised
        return {"request_id": "late"}

    def on_unknown(batch, error):
        told.append(list(batch))
        if len(told) == 1:
            interrupt.handled.clear()
            assert interrupt().wait(10)  # the execution timeout, a moment later

    with pytest.raises(Interrupted), caplog.at_level(logging.INFO, logger="test"):
        run_pool(send, concurrency=2, on_unknown=on_unknown)
    release.set()
    join_workers()
    assert told == [list(range(10, 20)), list(range(20, 30))]
    assert "interrupted: 10 of 30 ids acknowledged in 1 of 3 batches; outcome unknown: 20 ids" in caplog.text


#: the opcodes that call something. Since CPython 3.11 a signal's handler (Airflow's SIGTERM and
#: timeout) runs only after a call returns, at a function's entry or at a loop's backward jump
CALLS = {"CALL", "CALL_KW", "CALL_FUNCTION", "CALL_FUNCTION_KW", "CALL_METHOD", "CALL_FUNCTION_EX"}


@contextlib.contextmanager
def interrupted_after_call(
    function: Callable, point: int, when: Callable[[object], bool] = lambda frame: True
) -> Iterator[list[bool]]:
    """Raise ``Interrupted`` in ``function`` (in the frames ``when`` picks) as the handler of a
    signal that arrived meanwhile would: right after its ``point``-th call (from 0) returns.
    Yields a list that holds True once it was raised."""
    raised: list[bool] = []
    calls = iter(range(point + 1))
    last = [""]

    def local(frame, event, arg):
        if event == "opcode":
            after_call = last[0] in CALLS
            last[0] = dis.opname[frame.f_code.co_code[frame.f_lasti]]
            if after_call and next(calls, None) == point:
                raised.append(True)
                raise Interrupted  # the trace is off from here on
        return local

    def trace(frame, event, arg):
        if frame.f_code is function.__code__ and not raised and when(frame):
            frame.f_trace_opcodes, frame.f_trace_lines = True, False
            return local
        return None

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        yield raised
    finally:
        sys.settrace(previous)


def failed_call_interrupted_after(point: int) -> tuple[list, bool, type[BaseException]]:
    """Batches 2 and 3 time out for good; SIGTERM right after the ``point``-th call the failed
    call makes while it first tells on_unknown of them: the batches told, whether it came, and
    what the call raised."""
    send = later_batches_time_out()

    told: list[list[int]] = []
    with (
        interrupted_after_call(
            batching.tell_unknown, point, lambda frame: not frame.f_locals["stopping"]
        ) as raised,
        pytest.raises(BaseException) as stopped,
    ):
        run_pool(send, concurrency=2, on_unknown=lambda batch, error: told.append(list(batch)))
    join_workers()
    return told, bool(raised), stopped.type


def test_an_interrupt_just_before_a_failed_call_tells_a_batch_still_tells_it_once(caplog):
    # SIGTERM lands at each moment in turn where a handler can run while the failed call tells
    # on_unknown of its outcome-unknown batches, its callbacks aside (the tests above). One was just
    # after a batch went into ``told``, before its callback was called: the report then took it
    # for told, and nobody told on_unknown of it (an upsert's written_ids, and so its rollback,
    # left it out; a receipt called it not deleted).
    point = 0
    while True:
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="test"):
            told, interrupted, stopped = failed_call_interrupted_after(point)
        if not interrupted:
            assert stopped is batching.VikingDBBatchError
            break
        assert stopped is Interrupted
        assert told == [list(range(10, 20)), list(range(20, 30))], f"interrupted after call {point}"
        report = "interrupted: 10 of 30 ids acknowledged in 1 of 3 batches; outcome unknown: 20 ids"
        assert report in caplog.text
        point += 1
    assert point >= 6  # two calls before the first batch, and at least two for each


def test_an_interrupt_while_a_failed_call_sorts_its_ids_out_after_telling_still_reports(interrupt, caplog):
    # Batches 2 and 3 time out for good and on_unknown has heard of both; SIGTERM lands while the
    # failed call sorts the ids into done, unknown and not done for its VikingDBBatchError (keys()
    # runs over every batch: the longest step after the telling). The interruption went straight
    # up and no line said what was done, the very thing the telling was moved into the try for.
    send = later_batches_time_out()

    told, sorting = [], []

    def keys(batch):
        if len(told) == 2 and not sorting:
            sorting.append(list(batch))
            assert interrupt().wait(10)
        return list(batch)

    with pytest.raises(Interrupted), caplog.at_level(logging.INFO, logger="test"):
        run_pool(send, concurrency=2, keys=keys, on_unknown=lambda batch, error: told.append(list(batch)))
    join_workers()
    assert sorting == [list(range(10))]
    assert told == [list(range(10, 20)), list(range(20, 30))]
    assert "interrupted: 10 of 30 ids acknowledged in 1 of 3 batches; outcome unknown: 20 ids" in caplog.text
