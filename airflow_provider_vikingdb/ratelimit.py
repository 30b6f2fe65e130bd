"""Client-side pacing that keeps a writer at, not above, a collection's quota.

VikingDB counts rows per second per collection (1500 rows/s for synchronous
deletes by default, raisable on request) and answers HTTP 429 above it. The
quota is not announced, so the limiter learns it, in the spirit of the AWS
SDKs' adaptive retry mode:

* until the first 429 it does not pace at all (the quota may be far above
  what the client can send);
* on a 429 it measures how many rows the service actually accepted over the
  last second (while throttling, that *is* the quota) and paces just below it;
* while requests succeed it creeps up again, slowly, so that a raised quota or
  a quieter neighbour is found without a burst of 429s.

Throttles of requests sent before the last slow-down are echoes of the same
overload and do not slow it down again. A fixed ``max_rate`` caps it all.
Pure Python, no I/O: the clock and sleep are injectable for tests.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class AdaptiveRateLimiter:
    #: on a 429, pace at this fraction of the measured acceptance rate
    backoff = 0.95
    #: while nothing is throttled, the rate grows by this fraction per second
    growth_per_second = 0.01
    #: the window over which accepted rows are counted to measure the quota
    window = 1.0

    def __init__(
        self,
        *,
        max_rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_rate is not None and max_rate <= 0:
            raise ValueError(f"rows_per_second must be positive, got {max_rate!r}")
        self.max_rate = max_rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._base_rate: float | None = None  # learned rate after the last 429; None: not throttled yet
        self._since = clock()  # when the base rate was set
        self._next_slot = 0.0  # when the next request may go (GCRA-style reservation)
        self._accepted: deque[tuple[float, int]] = deque()
        self.throttles = 0

    @property
    def rate(self) -> float | None:
        """The pacing rate now in rows/s, or None when unpaced."""
        with self._lock:
            return self._current_rate(self._clock())

    def _current_rate(self, now: float) -> float | None:
        rate = None
        if self._base_rate is not None:
            rate = self._base_rate * (1.0 + self.growth_per_second * (now - self._since))
        if self.max_rate is not None:
            rate = self.max_rate if rate is None else min(rate, self.max_rate)
        return rate

    def acquire(self, rows: int) -> float:
        """Wait until ``rows`` may be sent; returns the send time to pass back on throttle."""
        with self._lock:
            now = self._clock()
            rate = self._current_rate(now)
            if rate is None:
                return now
            start = max(now, self._next_slot)
            self._next_slot = start + rows / rate
        if start > now:
            self._sleep(start - now)
        return start

    def on_success(self, rows: int) -> None:
        with self._lock:
            now = self._clock()
            self._accepted.append((now, rows))
            self._trim(now)

    def on_throttle(self, sent_at: float) -> None:
        with self._lock:
            self.throttles += 1
            now = self._clock()
            if self._base_rate is not None and sent_at < self._since:
                return  # an echo of the overload we already reacted to
            self._trim(now)
            measured = sum(rows for _, rows in self._accepted) / self.window
            current = self._current_rate(now)
            candidates = [r for r in (measured, current) if r]
            # Nothing accepted in the window (everything throttled): halve what we had.
            new_rate = min(candidates) * self.backoff if candidates else None
            if new_rate is None or new_rate <= 0:
                new_rate = (current or 100.0) / 2
            self._base_rate = max(new_rate, 1.0)
            self._since = now
            self._next_slot = max(self._next_slot, now)

    def _trim(self, now: float) -> None:
        edge = now - self.window
        while self._accepted and self._accepted[0][0] < edge:
            self._accepted.popleft()


_registry: dict[tuple[str, str, float | None], AdaptiveRateLimiter] = {}
_registry_lock = threading.Lock()


def limiter_for(endpoint: str, collection: str, max_rate: float | None) -> AdaptiveRateLimiter:
    """One limiter per collection (and cap) per process: the quota is shared per collection."""
    key = (endpoint, collection, max_rate)
    with _registry_lock:
        limiter = _registry.get(key)
        if limiter is None:
            limiter = _registry[key] = AdaptiveRateLimiter(max_rate=max_rate)
        return limiter
