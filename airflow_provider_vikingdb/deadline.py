"""A deadline for a whole attempt, and a way to abandon attempts in flight, for the sync client.

``requests`` (like ``http.client`` under it) bounds each socket read, not an
attempt: a server that trickles one byte per read keeps a call alive for ever.
Here every attempt runs under an ``Attempt``: the sockets its connection uses
are registered with it, and a watchdog thread shuts them down when the attempt's
deadline passes (or when its ``Cancel`` fires, e.g. the task was interrupted).
The blocked read then returns at once and the hook reports a timeout (or the
interruption) instead of waiting.

Standard library only at import time; ``requests``/``urllib3`` are imported by
``watched_adapter`` when a session is made.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

TIMED_OUT = "timeout"
INTERRUPTED = "interrupted"

_current = threading.local()


class Attempt:
    """One attempt's deadline and the sockets it uses; ``expire`` shuts them down."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        #: why the attempt was cut short (TIMED_OUT, INTERRUPTED), or None
        self.expired: str | None = None
        self._sockets: list[Any] = []
        self._done = False
        self._lock = threading.Lock()

    def watch(self, sock: Any) -> None:
        if sock is None:
            return
        with self._lock:
            if self._done:
                return
            if self.expired:
                _shut(sock)
            elif all(s is not sock for s in self._sockets):
                self._sockets.append(sock)

    def expire(self, reason: str) -> None:
        with self._lock:
            if self._done or self.expired:
                return
            self.expired = reason
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)

    def finish(self) -> None:
        with self._lock:
            self._done = True
            self._sockets.clear()


def _shut(sock: Any) -> None:
    # shutdown (not close): it wakes a read blocked in another thread at once, and the
    # connection pool then discards the connection as broken.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


class Cancel:
    """Set once to stop a batched call: no new attempt starts, attempts in flight are cut."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._attempts: set[Attempt] = set()
        self._lock = threading.Lock()

    def is_set(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()
        with self._lock:
            attempts = list(self._attempts)
        for attempt in attempts:
            attempt.expire(INTERRUPTED)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (at once) if cancelled meanwhile."""
        return self._event.wait(seconds)

    def _add(self, attempt: Attempt) -> None:
        with self._lock:
            self._attempts.add(attempt)
        if self._event.is_set():
            attempt.expire(INTERRUPTED)

    def _discard(self, attempt: Attempt) -> None:
        with self._lock:
            self._attempts.discard(attempt)


class _Watchdog:
    """One daemon thread for the process: expires attempts whose deadline has passed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Attempt]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, attempt: Attempt) -> None:
        with self._wake:
            heapq.heappush(self._heap, (attempt.deadline, next(self._order), attempt))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="vikingdb-deadlines", daemon=True)
                self._thread.start()
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap:
                    self._wake.wait()
                deadline, _, attempt = self._heap[0]
                left = deadline - time.monotonic()
                if left > 0:
                    self._wake.wait(left)
                    continue
                heapq.heappop(self._heap)
            attempt.expire(TIMED_OUT)  # a finished attempt ignores it


_watchdog = _Watchdog()


@contextlib.contextmanager
def attempt(timeout: float, cancel: Cancel | None = None) -> Iterator[Attempt]:
    """Run one attempt of this thread under a deadline of ``timeout`` seconds from now."""
    current = Attempt(time.monotonic() + timeout)
    _watchdog.add(current)
    if cancel is not None:
        cancel._add(current)
    previous = getattr(_current, "attempt", None)
    _current.attempt = current
    try:
        yield current
    finally:
        _current.attempt = previous
        current.finish()
        if cancel is not None:
            cancel._discard(current)


def _watch_connection(connection: Any) -> None:
    current = getattr(_current, "attempt", None)
    if current is not None:
        current.watch(getattr(connection, "sock", None))


_adapter_class: Any = None


def watched_adapter(pool_size: int) -> Any:
    """A ``requests`` HTTPAdapter whose connections register their sockets with the attempt.

    urllib3 must not retry by itself: every attempt needs a fresh signature.
    """
    global _adapter_class
    if _adapter_class is None:
        _adapter_class = _make_adapter_class()
    return _adapter_class(pool_connections=1, pool_maxsize=pool_size, max_retries=0)


def _make_adapter_class() -> Any:
    from requests.adapters import HTTPAdapter
    from urllib3 import PoolManager, ProxyManager
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class WatchedHTTPConnection(HTTPConnection):
        def connect(self) -> None:
            super().connect()
            _watch_connection(self)

        def request(self, *args: Any, **kwargs: Any) -> Any:
            _watch_connection(self)  # a reused keep-alive connection is not connected again
            return super().request(*args, **kwargs)

    class WatchedHTTPSConnection(HTTPSConnection):
        def connect(self) -> None:
            super().connect()
            _watch_connection(self)

        def request(self, *args: Any, **kwargs: Any) -> Any:
            _watch_connection(self)
            return super().request(*args, **kwargs)

    class WatchedHTTPPool(HTTPConnectionPool):
        ConnectionCls = WatchedHTTPConnection

    class WatchedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = WatchedHTTPSConnection

    pools = {"http": WatchedHTTPPool, "https": WatchedHTTPSPool}

    def watched(manager: Any) -> Any:
        # Plain and HTTP-proxy managers only: a SOCKS manager brings pool classes of its own.
        if type(manager) in (PoolManager, ProxyManager):
            manager.pool_classes_by_scheme = pools
        return manager

    class WatchedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            watched(self.poolmanager)

        def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
            return watched(super().proxy_manager_for(proxy, **kwargs))

    return WatchedAdapter
