"""Client-side pacing that keeps a writer at, not above, a collection's quota.

VikingDB counts rows per second per collection (1500 rows/s for synchronous
deletes by default, raisable on request) and answers HTTP 429 above it, from a
token bucket that also allows a burst. The quota is not announced, so the
limiter learns it, in the spirit of the AWS SDKs' adaptive retry mode (measure,
back off when throttled, grow back along a cubic), fitted to a token bucket:

* Until the first 429 nothing is paced: the quota may be far above what the
  client can send, or there may be none.
* A 429 means the bucket is (nearly) empty. Between two moments it was empty,
  the rows it accepted are the quota times the time between them, give or take
  a request, provided it never overflowed in between. So each congestion event
  measures the quota from an earlier one (the anchor). "No 429 for a while" is
  no such proof: the bucket may be hiding an overshoot.
* The first event has no anchor: it takes the rows accepted over the last second
  (the burst inflates it, answers still on their way shrink it) as a guess, and
  probes sooner, to be measured properly at the next event.
* After an event the rate restarts at the measured quota, stays nearly flat,
  then probes above it, faster and faster (a cubic), so a raised quota or a
  quieter neighbour is found. Rows not sent while under the quota are not lost
  at once: the bucket banks them (up to its size) and the probing spends them.
  Pacing below the quota "to be safe" would leave them banked when the job ends.
* If the rows we left unsent since the anchor could have overflowed the bucket,
  the measurement is only a floor: the rate then grows exponentially from it.
* Requests booked before an event that come back 429 too are echoes of the same
  congestion (concurrent requests all find the bucket empty): counted, not acted on.

A fixed ``max_rate`` caps it all. Pure Python, no I/O: the clock and sleep are
injectable and ``reserve`` never blocks, so tests and simulations need no sleeps.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

_NEVER = float("-inf")


class AdaptiveRateLimiter:
    """Paces requests of some rows each to a collection's learned quota. Thread-safe."""

    #: after a congestion event the rate starts at the quota and probes above it along a cubic:
    #: ``probe`` above it ``probe_time`` seconds later, 8 times that after twice as long, ...
    probe = 0.03
    probe_time = 15.0
    #: the same while the quota is a guess from the first event's burst: probe sooner
    probe_time_guessed = 2.0
    #: seconds over which accepted rows are counted for the first event's guess
    window = 1.0
    #: a measurement needs this many requests accepted since the anchor (error ~ 1 request / them)
    min_requests = 30
    #: rows the measurement may have left banked in the bucket, in seconds of quota, before it is
    #: taken for a floor (the bucket may have overflowed; VikingDB's holds about one second)
    max_banked = 0.5
    #: while the quota is a floor or unknown, the rate doubles every this many seconds
    doubling = 2.0
    #: anchors older than this are moved up (the quota or the neighbours may have changed)
    horizon = 60.0
    #: successes remembered since the anchor to check the bucket did not overflow (then thinned)
    max_trail = 4096

    def __init__(
        self,
        *,
        max_rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_rate is not None and not max_rate > 0:
            raise ValueError(f"rows_per_second must be positive, got {max_rate!r}")
        self.max_rate = max_rate
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._quota: float | None = None  # rows/s; None: never throttled, not paced
        self._mode = "unpaced"  # "measured", "guessed" (cubic, soon) or "floor" (exponential)
        self._since = _NEVER  # time of the last congestion event
        self._next_slot = _NEVER  # when the next request may go (GCRA-style reservation)
        self._accepted = 0  # rows accepted, ever
        self._recent: deque[tuple[float, int]] = deque()  # (time, rows) accepted within ``window``
        self._anchor: tuple[float, int] | None = None  # (time, rows accepted by then) of an event
        self._trail: list[tuple[float, int]] = []  # (time, rows accepted before it) since the anchor
        self._marks: list[tuple[float, int]] = []  # (time, rows accepted by then) of events since it
        self._burst = 0.0  # rows accepted in the window before the first event: bounds the bucket
        #: throttled answers seen (echoes included), and congestion events reacted to
        self.throttles = 0
        self.events = 0

    # ------------------------------------------------------------------ state

    @property
    def rate(self) -> float | None:
        """The pacing rate now in rows/s, or None when unpaced."""
        with self._lock:
            return self._rate(self._clock())

    @property
    def quota(self) -> float | None:
        """The quota as last measured or guessed (rows/s), or None before the first throttle."""
        return self._quota

    @property
    def mode(self) -> str:
        """``unpaced``, ``guessed``, ``floor`` or ``measured``: how much the quota is known."""
        return self._mode

    def _rate(self, now: float) -> float | None:
        rate = self._quota
        if rate is not None:
            elapsed = now - self._since
            if self._mode == "floor":
                rate *= 2.0 ** min(elapsed / self.doubling, 30.0)
            else:
                # Flat at first (the quota is what the bucket gives), then ever faster: a raised
                # quota or a quieter neighbour is found, an overshoot hidden by the bucket ends.
                probe_time = self.probe_time if self._mode == "measured" else self.probe_time_guessed
                rate *= 1.0 + self.probe * (elapsed / probe_time) ** 3
        if self.max_rate is not None:
            rate = self.max_rate if rate is None else min(rate, self.max_rate)
        return rate

    # ------------------------------------------------------------------ pacing

    def reserve(self, rows: int) -> tuple[float, float]:
        """Book the next slot for ``rows`` rows without waiting: ``(send_at, ticket)``.

        Send at ``send_at`` (now or later), unless ``stale(ticket)`` by then: a congestion
        event happened meanwhile and the slot was booked at the old rate; reserve again.
        The ticket goes back to ``on_throttle``.
        """
        with self._lock:
            now = self._clock()
            rate = self._rate(now)
            if rate is None:
                return now, now
            start = self._next_slot if self._next_slot > now else now
            self._next_slot = start + rows / rate
            return start, now

    def stale(self, ticket: float) -> bool:
        """True if a congestion event happened after the reservation ``ticket`` was made."""
        return ticket <= self._since

    def acquire(self, rows: int, sleep: Callable[[float], None] | None = None) -> float:
        """Wait until ``rows`` may be sent; returns the ticket to pass to ``on_throttle``."""
        sleep = sleep or self._sleep
        while True:
            send_at, ticket = self.reserve(rows)
            wait = send_at - self._clock()
            if wait <= 0:
                return ticket
            sleep(wait)
            if not self.stale(ticket):
                return ticket

    # ------------------------------------------------------------------ feedback

    def on_success(self, rows: int) -> None:
        now = self._clock()
        with self._lock:
            if self._anchor is not None:
                trail = self._trail
                trail.append((now, self._accepted))
                if len(trail) > self.max_trail:
                    del trail[::2]  # a long calm: keep every other point, the bound stays close
            self._accepted += rows
            recent = self._recent
            recent.append((now, rows))
            edge = now - self.window
            while recent[0][0] < edge:
                recent.popleft()

    def on_throttle(self, ticket: float, rows: int = 0) -> bool:
        """A 429 for a request booked at ``ticket``; True if it was a new congestion event.

        ``rows`` is the throttled request's: the bucket needs that long to cover it again.
        """
        with self._lock:
            self.throttles += 1
            if ticket <= self._since:
                return False  # an echo of the congestion already reacted to
            now = self._clock()
            self._quota = self._measure(now, max(rows, 1))
            self.events += 1
            self._since = now
            # The bucket was just found empty: the next request waits until it can cover one.
            # Slots booked before (at the old rate) are void: their holders book again.
            self._next_slot = now + max(rows, 1) / self._quota
            return True

    def _measure(self, now: float, rows: int) -> float:
        """The quota after a congestion event at ``now``; sets the mode and moves the anchor."""
        current = self._rate(now)
        if self._anchor is not None:
            since, accepted_then = self._anchor
            span = now - since
            accepted = self._accepted - accepted_then
            if accepted >= self.min_requests * rows and span > 0:
                measured = accepted / span
                # The quota fell (a neighbour came) if a later event, measured from, gives clearly less.
                for mark_time, mark_accepted in reversed(self._marks):
                    later = self._accepted - mark_accepted
                    if later >= self.min_requests * rows:
                        if later / (now - mark_time) < measured * (1.0 - 2.0 * rows / later):
                            self._set_anchor(mark_time, mark_accepted)
                            return self._measure(now, rows)
                        break
                self._marks.append((now, self._accepted))
                # At worst, what the bucket banked since the anchor had the quota been `measured`:
                # more than it holds, and it overflowed, so `measured` is only a floor.
                banked = max(
                    (measured * (t - since) - (before - accepted_then) for t, before in self._trail),
                    default=0.0,
                )
                if banked > min(self.max_banked * measured, self._burst / 2):
                    self._mode = "floor"
                    self._set_anchor(now, self._accepted)
                else:
                    self._mode = "measured"
                    if span > self.horizon:
                        self._set_anchor(now, self._accepted)
                return measured
            if accepted > 0 and current is not None:
                # Too few rows since the anchor to measure: what it gave so far, if less than we
                # paced, but not below a floor just found; keep the anchor to measure from it.
                floor = self._quota if self._mode == "floor" and self._quota is not None else 0.0
                self._mode = "guessed"
                return max(min(current, accepted / span), floor)
        self._set_anchor(now, self._accepted)
        recent = sum(n for t, n in self._recent if t >= now - self.window)
        if recent:
            self._burst = max(self._burst, recent)
            self._mode = "guessed"
            return recent / self.window
        # Nothing accepted to measure (a neighbour took the quota?): start low, double.
        self._mode = "floor"
        return rows / self.window if current is None else current / 2.0

    def _set_anchor(self, time: float, accepted: int) -> None:
        self._anchor = (time, accepted)
        self._trail = [(t, before) for t, before in self._trail if t > time]
        self._marks = [(t, n) for t, n in self._marks if t > time]


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
