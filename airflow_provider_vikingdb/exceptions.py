"""Errors raised by the VikingDB provider.

Every error carries what Volcengine support asks for: the service's ``code``,
``message``, ``request_id`` and the HTTP status.
"""

from __future__ import annotations


class VikingDBError(Exception):
    """An error answered by VikingDB (or met on the way to it).

    ``code`` is the service's string code (``InvalidParameter``,
    ``NotFound.VikingdbCollection``, ...) or one of ours for errors the service
    did not name (``Throttled``, ``ConnectionError``, ``Timeout``, ``BadResponse``).
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


class VikingDBAuthError(VikingDBError):
    """The service rejected the credentials or the signature (HTTP 401/403)."""


class VikingDBThrottledError(VikingDBError):
    """HTTP 429: the collection's quota is used up for now."""


class VikingDBConnectionError(VikingDBError):
    """No usable HTTP answer: connection refused or dropped, or a timeout."""

    @property
    def retryable(self) -> bool:
        return True


class VikingDBConfigError(ValueError):
    """The Airflow connection or an argument is wrong; raised before anything is sent."""


def is_retryable_status(status: int | None) -> bool:
    """The one place that says which HTTP answers are worth another attempt.

    The service's code list is not documented, so classify by status: 429
    (throttled) and 5xx are transient, every other 4xx is permanent.
    """
    return status is not None and (status == 429 or status >= 500)
