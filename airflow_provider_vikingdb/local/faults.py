"""Scripted faults: the next requests to a path fail, vanish, stall, break off or trickle.

Faults queue up per path and hit the next requests to that path in order (``after=N``
lets N requests through first). ``LocalVikingDB`` gets the public methods from
``ScriptedFaults``; the HTTP layer (``httpd.py``) carries out the transport ones.

What each one applies:

- ``drop_next``: nothing (the answer stands for a failure in front of the service);
- ``fail_next``: nothing by default; ``applied=True`` applies it first, then answers the
  fault (a gateway that timed out after the service did the work: a 504 page);
- ``stall_next``, ``trickle_next``: the request, as usual (a slow service still works);
- ``cut_next``: nothing by default; ``applied=True`` applies it first (a connection
  that breaks after the service did the work: a client cannot tell the two apart).
"""

from __future__ import annotations

import html
import random
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus

from airflow_provider_vikingdb.local import errors

API_PREFIX = "/api/vikingdb/"
#: Where ``cut_next`` breaks the answer off.
CUT_POINTS = ("body", "headers", "status")


@dataclass
class Fault:
    kind: str  # "fail", "drop", "stall", "cut" or "trickle"
    remaining: int
    after: int = 0  # requests to let through before this fault starts
    status: int = 503
    code: str = errors.INTERNAL_ERROR
    message: str = "Injected fault."
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # raw body instead of the JSON envelope (a proxy's HTML page, ...)
    echo_headers: bool = False  # an HTML body that repeats every request header
    seconds: float = 0.0  # stall
    where: str = "body"  # cut
    applied: bool = False  # cut, fail: the request is applied first
    interval: float = 0.5  # trickle


def full_path(path: str) -> str:
    """``data/delete`` -> ``/api/vikingdb/data/delete``; full paths are kept."""
    return path if path.startswith("/") else API_PREFIX + path.lstrip("/")


def _http_status(status: object) -> int:
    """``status`` if it is an HTTP status code (an int from 100 to 599); else ValueError."""
    if not (isinstance(status, int) and 100 <= status <= 599):
        raise ValueError(f"status must be an HTTP status code, not {status!r}")
    return status


def echo_page(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    """A proxy's error page that shows the request headers verbatim (secrets included).

    Some proxies and load balancers do this; a client that puts the body of an error
    answer into its exception message would leak the Authorization header.
    """
    try:
        title = f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        title = str(status)
    lines = "\n".join(f"{name}: {value}" for name, value in headers)
    page = (
        f"<html><head><title>{html.escape(title)}</title></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>The upstream service did not answer. Your request:</p>\n"
        f"<pre>\n{lines}\n</pre>\n<hr><address>vikingdb-local proxy</address>\n</body></html>\n"
    )
    return page.encode("utf-8", "replace")


class FaultScript:
    """The queues of scripted faults per path, and the random 503s of ``fail_rate``."""

    def __init__(self, fail_rate: float = 0.0, seed: int | None = None) -> None:
        self.lock = threading.Lock()
        self.queues: dict[str, deque[Fault]] = {}
        self.fail_rate = fail_rate
        self.random = random.Random(seed)

    @property
    def fail_rate(self) -> float:
        return self._fail_rate

    @fail_rate.setter
    def fail_rate(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("fail_rate must be between 0 and 1")
        self._fail_rate = rate

    def add(self, path: str, fault: Fault) -> None:
        if fault.remaining < 1 or fault.after < 0:
            raise ValueError("times must be >= 1 and after >= 0")
        with self.lock:
            self.queues.setdefault(full_path(path), deque()).append(fault)

    def clear(self) -> None:
        with self.lock:
            self.queues.clear()

    def take(self, path: str) -> Fault | None:
        """The fault for this request to ``path``, if any (consumes it)."""
        with self.lock:
            queue = self.queues.get(path)
            if queue:
                fault = queue[0]
                if fault.after > 0:
                    fault.after -= 1
                    return None
                fault.remaining -= 1
                if fault.remaining <= 0:
                    queue.popleft()
                return fault
            # Random faults hit data endpoints only: the SDK's constructor pings and must get through.
            is_data = path.startswith(API_PREFIX + "data/")
            if is_data and self._fail_rate > 0 and self.random.random() < self._fail_rate:
                return Fault(
                    "fail",
                    remaining=1,
                    status=503,
                    code=errors.SERVICE_UNAVAILABLE,
                    message="Injected random fault (fail_rate).",
                )
            return None


class ScriptedFaults:
    """The fault methods of ``LocalVikingDB``. A path is given whole or short: ``"data/delete"``."""

    faults: FaultScript

    @property
    def fail_rate(self) -> float:
        """The share of data requests answered 503 ``ServiceUnavailable`` at random (0 to 1)."""
        return self.faults.fail_rate

    @fail_rate.setter
    def fail_rate(self, rate: float) -> None:
        self.faults.fail_rate = rate

    def fail_next(
        self,
        path: str,
        times: int = 1,
        status: int = 503,
        code: str = errors.INTERNAL_ERROR,
        message: str = "Injected fault.",
        headers: Mapping[str, str] | None = None,
        body: str | bytes | None = None,
        after: int = 0,
        echo_headers: bool = False,
        applied: bool = False,
    ) -> None:
        """Answer ``status`` with the envelope ``code``/``message`` (or the raw ``body``).

        ``echo_headers=True``: the body is a proxy's HTML error page that repeats every
        request header verbatim, ``Authorization`` and ``X-Security-Token`` included.

        ``applied=False`` (default): the request is not applied (a failure in front of the
        service that never passed it on). ``applied=True``: the request is handled as usual
        first (applied, if the service would accept it), then this answer replaces the
        service's: a gateway that gave up waiting after the service did the work
        (``status=504, body="<html>504 Gateway Time-out</html>"``).
        """
        status = _http_status(status)
        if echo_headers and body is not None:
            raise ValueError("give either body or echo_headers=True, not both")
        raw = body.encode("utf-8") if isinstance(body, str) else body
        fault = Fault(
            "fail",
            remaining=times,
            after=after,
            status=status,
            code=code,
            message=message,
            headers=dict(headers or {}),
            body=raw,
            echo_headers=echo_headers,
            applied=applied,
        )
        self.faults.add(path, fault)

    def drop_next(self, path: str, times: int = 1, after: int = 0) -> None:
        """Close the connection without answering (after reading the request); apply nothing."""
        self.faults.add(path, Fault("drop", remaining=times, after=after))

    def stall_next(self, path: str, times: int = 1, seconds: float = 5.0, after: int = 0) -> None:
        """Wait ``seconds`` before handling, to trip client timeouts.

        After the wait the request is handled as usual (and applied, like a slow real
        service); a client that timed out just never sees the answer.
        """
        self.faults.add(path, Fault("stall", remaining=times, after=after, seconds=seconds))

    def cut_next(
        self, path: str, times: int = 1, where: str = "body", applied: bool = False, after: int = 0
    ) -> None:
        """Break the connection off partway through the answer.

        ``where="body"``: the status line and headers (``Content-Length: N``) go out
        whole, then half of the body, then the connection closes (requests raises
        ``ChunkedEncodingError``). ``where="status"``: it closes inside the status
        line's code, ``HTTP/1.1 5`` (requests raises ``ConnectionError``, ``BadStatusLine``).
        ``where="headers"``: it closes halfway through the header block, after a whole
        status line; what a client makes of that varies (``http.client``, so requests,
        takes it as an answer with that status and an empty body).

        ``applied=False`` (default): the request is not applied and the answer cut is
        a 503 ``InternalError``; ``applied=True``: it is applied first and the real
        answer is cut.
        """
        if where not in CUT_POINTS:
            raise ValueError(f"where must be one of {', '.join(CUT_POINTS)}, not {where!r}")
        self.faults.add(path, Fault("cut", remaining=times, after=after, where=where, applied=applied))

    def trickle_next(self, path: str, times: int = 1, interval: float = 0.5, after: int = 0) -> None:
        """Handle (and apply) the request as usual, then send the answer one byte every ``interval`` s.

        Status line, headers and body all trickle, so a client's read timeout (which
        restarts with every byte) never fires: only a total deadline ends the wait.
        Other connections are served meanwhile; ``stop()`` ends a trickle.
        """
        if not interval > 0:
            raise ValueError("interval must be > 0 seconds")
        self.faults.add(path, Fault("trickle", remaining=times, after=after, interval=interval))

    def clear_faults(self) -> None:
        """Forget every scripted fault not yet used (``fail_rate`` stays)."""
        self.faults.clear()
