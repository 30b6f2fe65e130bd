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
