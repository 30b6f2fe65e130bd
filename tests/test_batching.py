"""The batch pool's report when the task is interrupted: what it says stays true afterwards."""

from __future__ import annotations

import logging
import threading

import pytest

from airflow_provider_vikingdb import batching
from airflow_provider_vikingdb.batching import run_batches


class Stopped(BaseException):
    """Stands for AirflowTaskTerminated / the execution timeout: raised in the calling thread."""


def run_pool(send, **kwargs):
    """``run_batches`` deleting the ints 0..29 in batches of 10 (batch n holds 10(n-1)..10n-1)."""
    options = {"concurrency": 2, "keys": list, "log": logging.getLogger("test")} | kwargs
    return run_batches(
        action="delete", target="collection 'c'", items=list(range(30)), batch_size=10, send=send, **options
    )


def test_a_batch_answered_after_the_interrupt_report_stays_unknown_and_gets_no_receipt_line(monkeypatch):
    # A worker's answer that comes back after the interrupted call has reported (and its receipt
    # was closed) must not turn into an acknowledged batch: the receipt would name its ids twice,
    # or be written to after it was closed.
    monkeypatch.setattr(batching, "INTERRUPT_GRACE", 0.1)
    caller = threading.current_thread()
    worker_sending, release = threading.Event(), threading.Event()
    acknowledged, unknown = [], []

    def send(batch, cancel):
        number = batch[0] // 10 + 1
        if number == 1:
            return {"request_id": "r1"}
        if threading.current_thread() is caller:
            assert worker_sending.wait(10)
            raise Stopped  # the task is stopped while both batches are in flight
        worker_sending.set()
        assert release.wait(10)  # answered only once the report is made
        return {"request_id": f"r{number}"}

    with pytest.raises(Stopped):
        run_pool(
            send,
            on_batch=lambda batch, envelope: acknowledged.append(list(batch)),
            on_unknown=lambda batch, error: unknown.append(list(batch)),
        )
    reported = (sorted(map(tuple, acknowledged)), sorted(map(tuple, unknown)))
    release.set()
    for thread in threading.enumerate():
        if thread.name.startswith("vikingdb-delete-"):
            thread.join(10)
    # batch 1 acknowledged; 2 and 3 in flight when stopped: unknown, and nothing changed after
    assert acknowledged == [list(range(10))]
    assert sorted(unknown) == [list(range(10, 20)), list(range(20, 30))]
    assert (sorted(map(tuple, acknowledged)), sorted(map(tuple, unknown))) == reported


def test_an_interrupt_inside_the_receipt_write_reports_the_batch_as_unknown_not_acknowledged():
    # The receipt line is written before the batch counts as acknowledged: stopped in between,
    # the batch is reported as outcome unknown, never as acknowledged without its line.
    told_unknown = []

    def on_batch(batch, envelope):
        if batch[0] == 10:
            raise Stopped  # the signal lands while the receipt writes batch 2's line

    with pytest.raises(Stopped):
        run_pool(
            lambda batch, cancel: {"request_id": "r"},
            concurrency=1,
            on_batch=on_batch,
            on_unknown=lambda batch, error: told_unknown.append(list(batch)),
        )
    assert told_unknown == [list(range(10, 20))]
