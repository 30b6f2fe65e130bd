"""The one rule of how our tasks fail: retryable when another try could fix it, at once when not."""

from __future__ import annotations

import pytest

from airflow_provider_vikingdb._compat import AirflowException, AirflowFailException
from airflow_provider_vikingdb.batching import BatchResult
from airflow_provider_vikingdb.exceptions import (
    VikingDBAuthError,
    VikingDBBatchError,
    VikingDBConfigError,
    VikingDBConnectionError,
    VikingDBError,
    VikingDBInterruptedError,
    VikingDBThrottledError,
)
from airflow_provider_vikingdb.filter_delete import FilterDeleteError, FilterDeleteResult
from airflow_provider_vikingdb.task_failure import fail_try, retry_can_fix

TRANSIENT = [
    VikingDBError("server error", code="InternalError", http_status=503),
    VikingDBError("bad gateway", code="BadResponse", http_status=502),
    VikingDBThrottledError("quota", code="QuotaExceeded", http_status=429),  # past the hook's 60 tries
    VikingDBConnectionError("no complete answer within 2s", code="Timeout"),
    VikingDBConnectionError("the connection broke", code="IncompleteAnswer"),
    VikingDBConnectionError("could not reach", code="ConnectionError"),
    VikingDBConnectionError("empty answer", code="BadResponse", http_status=200),
    VikingDBInterruptedError(),
]
PERMANENT = [
    VikingDBAuthError("the credentials were rejected", code="SignatureDoesNotMatch", http_status=403),
    VikingDBAuthError("the credentials were rejected", code="InvalidAuthorization", http_status=401),
    VikingDBConfigError("connection 'vikingdb_default': extra 'region' is missing"),
    VikingDBError("bad ids", code="InvalidParameter", http_status=400),
    VikingDBError("no such collection", code="NotFound.VikingdbCollection", http_status=404),
    VikingDBError("TLS with https://h failed", code="SSLError"),
]


def batch_error(cause):
    result = BatchResult(target="collection 'c'", ids_requested=300, batches_total=3, batches=1, ids_done=100)
    return VikingDBBatchError(
        cause,
        action="delete",
        result=result,
        failed_batches=[2],
        done_ids=[f"a{i}" for i in range(100)],
        not_done_ids=[f"b{i}" for i in range(200)],
    )


def filter_error(cause=None, **kwargs):
    return FilterDeleteError("deleting page 1 failed", FilterDeleteResult("c", {}), cause, **kwargs)


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: e.code)
def test_transient_errors_and_whatever_wraps_them_are_retryable(error):
    assert retry_can_fix(error)
    assert retry_can_fix(batch_error(error))  # a batch stopped by it
    assert retry_can_fix(filter_error(batch_error(error)))  # a delete by filter stopped by that batch


@pytest.mark.parametrize("error", PERMANENT, ids=lambda e: e.code)
def test_permanent_errors_and_whatever_wraps_them_fail_at_once(error):
    assert not retry_can_fix(error)
    assert not retry_can_fix(batch_error(error))
    assert not retry_can_fix(filter_error(batch_error(error)))


def test_a_delete_by_filter_that_gave_up_by_itself_says_whether_a_retry_helps():
    assert not retry_can_fix(filter_error())  # the max_delete cap: as low on the next try
    assert retry_can_fix(filter_error(retryable=True))  # max_passes, an index slower than its timeout


def test_our_own_bad_input_checks_are_never_retried():
    assert not retry_can_fix(ValueError("ids[2] is a bool"))


class Task:
    task_id = "delete"


@pytest.mark.parametrize("error", TRANSIENT[:1] + PERMANENT[:1], ids=["transient", "permanent"])
def test_fail_try_keeps_the_message_and_the_cause(error):
    wrapped = batch_error(error)
    with pytest.raises(AirflowException) as info:
        fail_try(Task(), str(wrapped), wrapped)
    assert isinstance(info.value, AirflowFailException) is not retry_can_fix(error)
    assert str(info.value) == f"Task 'delete': {wrapped}"
    assert "not deleted (refused, or never sent): 200 ids" in str(info.value)
    assert info.value.__cause__ is wrapped  # Airflow logs it under the message


def test_a_refusal_after_a_lost_attempt_beside_a_503_still_fails_the_task_at_once():
    """Batches 2 and 3 fail together: 2 on a 503, 3 on a 403 whose first attempt timed out.

    The 403 was the service's word on the retry: a lost earlier attempt makes its ids outcome
    unknown, not the refusal curable. Another try would meet the 403 again, so it is the cause,
    the task fails at once, and the message does not promise that a retry finishes the job.
    """
    import threading

    from tests.test_batching import run_pool

    refused = VikingDBAuthError("the credentials were rejected", code="AuthFailed", http_status=403)
    refused.earlier_attempt_lost = True  # as the hook's retry loop marks it
    errors = {2: VikingDBError("busy", code="ServiceUnavailable", http_status=503), 3: refused}
    both_sent = threading.Barrier(2, timeout=10)

    def send(batch, cancel):
        number = batch[0] // 10 + 1
        if number == 1:
            return {"request_id": "r1"}
        both_sent.wait()  # 2 and 3 in flight together
        raise errors[number]

    with pytest.raises(VikingDBBatchError) as info:
        run_pool(send)
    err = info.value
    assert err.failed_batches == [2, 3] and err.cause is refused
    assert err.unknown_ids == list(range(20, 30))  # its ids may still have been deleted
    assert not retry_can_fix(err)
    with pytest.raises(AirflowFailException):
        fail_try(Task(), str(err), err)
    text = str(err)
    assert "batch 3 of 3 failed with VikingDB HTTP 403 AuthFailed" in text
    assert "Also failed, in flight at the same time: batch 2: HTTP 503 ServiceUnavailable." in text
    assert text.endswith("Fix the cause above, then clear the task: deletes are idempotent, so what was "
                         "already applied is harmless to send again.")  # fmt: skip
