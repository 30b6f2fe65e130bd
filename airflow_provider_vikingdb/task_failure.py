"""How a task of ours fails: so that Airflow's ``retries`` apply when, and only when, they can help.

One rule for every operator: an error that another try could fix fails the try with a plain
``AirflowException`` (Airflow retries it, as ``retries`` says); one that a retry cannot fix
fails the task at once with ``AirflowFailException`` (red now, not after ``retries x
retry_delay`` of yellow). Which is which is the hook's own classification
(``VikingDBError.retryable``: 429, 5xx, timeouts, hosts that cannot be reached, answers cut
short), read through the errors that wrap another (``cause``: a batch that stopped, a delete
by filter that stopped).

Imported by DAG files through the operators: Airflow's exception names and our pure modules only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

from airflow_provider_vikingdb._compat import AirflowException, AirflowFailException, task_message
from airflow_provider_vikingdb.exceptions import VikingDBError, retry_helps
from airflow_provider_vikingdb.receipts import ReceiptError


def retry_can_fix(error: BaseException) -> bool:
    """Would another try of the task fix what stopped this one?

    - An error that wraps another (``VikingDBBatchError``, ``FilterDeleteError``: ``cause``)
      is what its cause is: a batch stopped by a 503 is transient, one stopped by a 400 is not.
    - ``VikingDBInterruptedError``: yes. The task was stopped from outside (its
      ``execution_timeout``, a kill); nothing is wrong with the request, and Airflow treats its own
      timeout as a failure it retries.
    - Any other ``VikingDBError``: its ``retryable`` (the hook's classification): 429 (throttled
      beyond the hook's own budget), 5xx, timeouts, unreachable hosts, cut answers are transient;
      credentials (401/403), every other 4xx (400, 404 unknown collection or index), TLS and
      configuration errors are not.
    - ``ReceiptError``: its ``retryable`` (the store could not be reached: yes; a bad place, no
      permission, an existing object: no).
    - Anything else (bad input found by our own checks): no.
    """
    seen: set[int] = set()
    while id(error) not in seen:
        seen.add(id(error))
        cause = getattr(error, "cause", None)
        if isinstance(cause, VikingDBError):
            error = cause
            continue
        if isinstance(error, VikingDBError):
            return retry_helps(error)
        if isinstance(error, ReceiptError):
            return error.retryable
        return False
    return False  # pragma: no cover - a cause that leads back to itself


def fail_try(task: Any, message: str, error: BaseException) -> NoReturn:
    """Fail ``task`` with ``message``: retryable when ``retry_can_fix(error)``, at once otherwise.

    ``error`` becomes the failure's ``__cause__`` (Airflow logs it after the message); it holds
    the service's code, status and request_id, and no secret (the hook scrubs what it quotes).
    """
    text = task_message(task, message)
    if retry_can_fix(error):
        raise AirflowException(text) from error
    raise AirflowFailException(text) from error


def fail_wait_event(task: Any, message: str, event: Mapping[str, Any]) -> NoReturn:
    """Fail ``task`` after a trigger's ``error`` event, by the same rule.

    The event carries the error's ``code`` and ``http_status`` (not the error itself: events
    are JSON). An event that names neither (the trigger could not read the connection) cannot
    be classified: it fails only this try, as before.
    """
    code, status = event.get("code"), event.get("http_status")
    text = task_message(task, message)
    if code is None and status is None:
        raise AirflowException(text)
    error = VikingDBError(
        str(event.get("message") or ""),
        code=str(code) if code is not None else None,
        http_status=status if isinstance(status, int) and not isinstance(status, bool) else None,
        request_id=event.get("request_id") or None,
    )
    if retry_can_fix(error):
        raise AirflowException(text)
    raise AirflowFailException(text)


__all__ = ["fail_try", "fail_wait_event", "retry_can_fix"]
