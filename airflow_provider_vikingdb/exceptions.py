"""Every error the VikingDB provider raises, under one base: ``VikingDBError``.

Every error the service answered carries what Volcengine support asks for: the
service's ``code``, ``message``, ``request_id`` and the HTTP status. Errors met
before anything was sent (``VikingDBConfigError``) say which field is wrong and
how to fix it.

Pure: no imports beyond the standard library (DAG files import it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class VikingDBError(Exception):
    """An error answered by VikingDB (or met on the way to it).

    ``code`` is the service's string code (``InvalidParameter``,
    ``NotFound.VikingdbCollection``, ...) or one of ours for errors the service
    did not name (``Timeout``, ``ConnectionError``, ``IncompleteAnswer``, ``SSLError``,
    ``BadResponse``, ``Interrupted``).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
        path: str | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.request_id = request_id
        self.http_status = http_status
        self.path = path
        super().__init__(self._text())

    def _text(self) -> str:
        where = f" on {self.path}" if self.path else ""
        status = f"HTTP {self.http_status} " if self.http_status is not None else ""
        code = self.code or "Error"
        rid = f" (request_id={self.request_id})" if self.request_id else ""
        return f"VikingDB {status}{code}{where}: {self.message}{rid}"

    @property
    def retryable(self) -> bool:
        """Throttling, server errors and network failures may succeed when tried again."""
        return is_retryable_status(self.http_status)


class VikingDBConfigError(VikingDBError, ValueError):
    """The Airflow connection or an argument is wrong; raised before anything is sent.

    Also a ``ValueError``: it is bad input, and callers that catch ``ValueError`` for
    bad arguments keep working.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, code="InvalidConfig")

    def _text(self) -> str:
        return self.message

    @property
    def retryable(self) -> bool:
        return False


class VikingDBAuthError(VikingDBError):
    """The service rejected the credentials or the signature (HTTP 401/403)."""


class VikingDBThrottledError(VikingDBError):
    """HTTP 429: the collection's quota is used up for now."""


class VikingDBConnectionError(VikingDBError):
    """No usable HTTP answer: the host could not be reached (``ConnectionError``: it got nothing), the
    connection broke mid-answer (``IncompleteAnswer``: it may have been applied), or a timeout."""

    @property
    def retryable(self) -> bool:
        return True


class VikingDBInterruptedError(VikingDBError):
    """The call was interrupted (the task was stopped) before it finished; nothing more is sent."""

    def __init__(
        self, message: str = "interrupted: the task is stopping", *, path: str | None = None
    ) -> None:
        super().__init__(message, code="Interrupted", path=path)

    @property
    def retryable(self) -> bool:
        return False


class VikingDBBatchError(VikingDBError):
    """A batched call stopped part-way: says what was and was not done.

    ``done_ids`` were acknowledged by the service; ``not_done_ids`` were not (their
    batch failed, or was never sent once a permanent error was seen). ``result`` is
    the ``BatchResult`` of what was done, ``cause`` the error that stopped it.
    """

    def __init__(
        self,
        cause: VikingDBError,
        *,
        action: str,
        result: Any,
        failed_batches: list[int],
        done_ids: list[str | int],
        not_done_ids: list[str | int],
    ) -> None:
        self.cause = cause
        self.result = result
        self.failed_batches = failed_batches
        self.done_ids = done_ids
        self.not_done_ids = not_done_ids
        summary = (
            f"{action} stopped on {result.target}: batch {', '.join(map(str, failed_batches))} of "
            f"{result.batches_total} failed with {cause}. Done before it stopped: {len(done_ids)} of "
            f"{result.ids_requested} ids in {result.batches} batches. Not done: {len(not_done_ids)} ids"
            f"{sample(not_done_ids)}."
        )
        super().__init__(
            summary,
            code=cause.code,
            request_id=cause.request_id,
            http_status=cause.http_status,
        )

    def _text(self) -> str:
        return self.message

    @property
    def retryable(self) -> bool:
        return False


def is_retryable_status(status: int | None) -> bool:
    """The one place that says which HTTP answers are worth another attempt.

    The service's code list is not documented, so classify by status: 429
    (throttled) and 5xx are transient, every other 4xx is permanent.
    """
    return status is not None and (status == 429 or status >= 500)


def sample(ids: Sequence[object], limit: int = 5) -> str:
    """`` (first: 'a', 'b', ...)`` for a message, or nothing for no ids."""
    if not ids:
        return ""
    shown = ", ".join(repr(i) for i in ids[:limit])
    return f" (first: {shown}{', ...' if len(ids) > limit else ''})"
