"""Client-side pacing that keeps writers at, not above, a collection's quota, and shares it.

VikingDB counts rows per second per collection (1500 rows/s for synchronous
deletes by default, raisable on request) and answers HTTP 429 above it. How it
counts them is not documented; this is fitted to a token bucket that allows a burst
of about one second of quota (the local server's), and with a smaller bucket it
settles below the quota (docs/performance.md, "When the service allows a smaller
burst": 76 % with 0.2 s, where a fixed ``max_rate`` at 98 % of the quota gets 97.5 %). The quota is
not announced, and it is shared by every process writing to the collection:
mapped tasks, two DAGs, workers on other machines. They share no memory, only the
service's answers, so each process learns on its own from its own 429s.

The model is CUBIC (RFC 9438), the congestion control the AWS SDKs' adaptive
retry mode applies to throttling, run on a rate in rows/s and in real time:

* a congestion event (a 429) sets a reference rate and cuts the rate to
  ``beta`` of it (multiplicative decrease);
* then the rate follows a cubic in the time since the event: a concave climb
  back to the reference, flat near it, then convex, faster and faster above it.
  Near the rate where the last congestion was, it goes slowly (few 429s); far
  from it, fast: quota freed by a neighbour that stopped is taken up within
  seconds (1.4 s back to a 750 rows/s reference, then +60 rows/s a second
  later, +480 after two, +1620 after three).

Why this and not plain AIMD (a linear increase): to take up freed quota that fast,
the linear slope must be steep, and since every process climbs on its own, every
process then overshoots its share between two 429s. In the simulation
(``bench/shared_quota_sim.py``, worst of 20 seeds), a climb of 400 rows/s a second
takes up freed quota about as fast (2.6 s, 2.8 s here), with 7.3 % and 12.0 % of
requests throttled at 2 and 4 processes, against 3.8 % and 7.8 % here. At a quarter of
that slope it is throttled about as much (2.6 % and 7.7 %), but taking up freed quota takes
about 7.5 s, and the combined throughput at 4 processes falls from 92.8 % to 90.8 %. The cubic
part above the reference is in absolute rows/s, the same for every process
whatever its share: that is what draws the shares together (AIMD's argument for
its additive increase). They converge roughly, not exactly: who is refused first
at an empty bucket is partly luck, and shares stay within about a third of fair.

Fitted to a token bucket:

* The start is paced at the documented default quota (1500 rows/s for writes) and
  the rate doubles every half second until the first 429: a raised quota (or none,
  on the local server) is reached within about two seconds, while processes started
  together run the bucket dry with about one request each in flight: about one 429
  each at the start, where the old unpaced start cost eight.
* A 429 means the bucket is (nearly) empty. Between two such moments the service
  accepted exactly the quota times the time between them, from everyone. So the
  rows *this process* got accepted since its last event, over that time, are its
  share of the quota (all of it, alone). The reference is that share, or the rate
  at the event if lower: what was got, not what was asked for, so that a process
  that was refused does not take itself for a large one.
* The first event has no earlier one, but the bucket started full (one second of
  quota) and has been refilled at the quota since: what everyone got accepted so far
  is the quota times (the time since the start + 1 s). So the rows this process got
  accepted since it started, over (that time + 1 s), are its share: processes started
  together all guess about the same, fair share (the old guess, the rows accepted
  over the last second, differed by 2x between processes that started together and
  left one of them behind for a long time). Above the documented default the quota
  was raised, and the bucket may have overflowed while the start was still slow: then
  the rows of the last second are the better (higher) guess.
* Requests sent before an event that come back 429 are echoes of it, and a
  process that has not got one request through since its last event does not
  take another: it is not the one using the quota, and cutting again and again
  would starve it (the old limiter's tiny-rate trap). Not for more than a second,
  though: refused for a whole second since its last event, it takes the next 429
  as a new event (so at most one a second, each by ``beta``: no collapse). In a
  crowd, where a share is about a batch a second or less (16 processes and more at
  1500 rows/s), a process may get nothing through for seconds, and its cubic climbed
  on with time meanwhile: from 16 processes on every process did, 78-99 % of the
  requests were refused, and one batch up to 522 times, past the hook's budget of
  60, so that batch and its task failed (simulation, 20 seeds). Now 38-56 %, and at
  most 22 times.
* Alone, two measurements in a row (each over 40 requests or more) agree within
  2 %: the quota is known, and no cut is needed. The process paces just under it
  (98 %: the bucket banks the rest, so a request a little early still finds
  tokens) for 8 s, then probes along a gentler cubic, so a raised quota is found.
  A 429 that comes early (a newcomer) or late (more quota) breaks the agreement,
  and the next cycle is the shared one. This keeps a lone writer at the quota with
  few 429s; sharing, a process probes about every three seconds, and each probe
  that finds no room costs about one 429 (1 per process every ~3 s).
* A process that had the quota alone, then gets a 429 showing a smaller share than
  the quota, has a newcomer: its reference is half of that share, room for one
  (CUBIC's fast convergence: a flow whose share shrank gives up more). The newcomer
  found the bucket empty and took itself for a small share (about 100 rows/s), and
  an empty bucket refuses the less frequent sender first. With that room, and the
  rate held to twice what was sent over the last second (not over four requests,
  which at 100 rows/s took four seconds to double), it has 80 % of its fair share
  4.8 s after it started (median of 20 simulated runs; 5.9 s worst), where it took
  12.6 s (31.7 s) before.
* Sharing, a process sends nothing for a moment after each congestion event: 1.4 s x
  (1 - its share / the documented quota), so 0.7 s at half of 1500 rows/s, 1.05 s at a
  quarter, none alone at the quota. Most 429s in a crowd come in clusters: a bucket that
  filled while everyone sat near their references runs dry while several are above
  theirs. The pause leaves a cushion in the bucket, so the others' requests already on
  their way pass instead of each costing a 429 (in the simulation, 2 processes: 5.4 % of
  requests throttled without it, 3.8 % with it; 4 processes: 11.2 % and 7.8 %). It is
  longer the smaller the share, as a small share is one of many; alone at the quota it
  would only cost throughput.
* A slot is claimed when the request is sent, at the rate of that moment: a rate
  that grows is used at once by workers already waiting, none is held to a slot
  booked at an old, lower rate.

A fixed ``max_rate`` (the hook's ``rows_per_second``) caps it all. Tasks capped alike (the
quota / N each, for N mapped tasks) send at the same interval, so their phases stay where they
started: started together, they arrive together, and when more arrive at once than the bucket
holds (16 tasks of 100-row batches at 1500 rows/s: 15 fit), the last is refused, comes back at
the same moment of the next interval, and is refused again until the others finish. So a capped
process starts at a random point of its first interval, and one refused at its cap moves its next
request to a random point of its interval. In the simulation (10 seeds, worst), 16 such tasks:
the lowest got 61 % of its share before, 87 % now, with no 429; 24 tasks: 2 % before, 83 %.

The rate stays within twice what the process actually sent over the last second (as in the
AWS SDKs), so that a quiet spell does not let the cubic run away. Pure Python, no I/O: the
clock, the sleep and the random draws are injectable and ``try_acquire`` never blocks, so
tests and simulations need no sleeps.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable

_NEVER = float("-inf")


class AdaptiveRateLimiter:
    """Paces requests of some rows each to a collection's learned (share of the) quota. Thread-safe."""

    #: multiplicative decrease: after a congestion event (not alone) the rate restarts at this
    #: fraction of the event's rate; the bucket banks the dip, the climb back spends it
    beta = 0.8
    #: the cubic's scale, in rows/s per s³, the same for every process whatever its share. Back
    #: at the event's rate cbrt(rate * (1 - beta) / scale) seconds after it (1.4 s at 750 rows/s),
    #: then 60 rows/s above it 1 s later, 480 after 2 s, 1620 after 3 s
    scale = 60.0
    #: alone (two measurements agree): pace at this fraction of the measured quota ...
    calm = 0.98
    #: ... for this many seconds, then probe along a cubic of this (gentler) scale
    calm_time = 8.0
    calm_scale = 10.0
    #: two measurements agree within this fraction ...
    agree = 0.02
    #: ... each made over at least this many requests accepted (one request more or less is
    #: then within it: alone at 1500 rows/s that is 2.7 s, sharing half of it 5.3 s)
    precise_requests = 40
    #: fewer requests accepted since the last event than this is no measurement at all
    min_requests = 4
    #: seconds over which accepted rows are counted (the raised quota's first guess, the rate sent)
    window = 1.0
    #: the start: paced at the documented default write quota (vikingdb-api.md section 5) ...
    initial = 1500.0
    #: ... growing this many times a second until the first 429 ...
    start_growth = 4.0
    #: ... and within ``headroom`` times what was sent over this many seconds
    start_span = 0.5
    #: the burst the service's bucket holds, in seconds of quota: it starts full
    burst = 1.0
    #: the rate stays within this multiple of the rows sent recently
    headroom = 2.0
    #: alone, then a 429 that shows a smaller share than the quota: the reference is this fraction
    #: of that share, room for a newcomer that found the bucket empty
    give = 0.5
    #: sharing, after a congestion event nothing is sent for this many seconds x (1 - the share /
    #: ``initial``): a cushion in the bucket for the other processes' requests on their way
    pause = 1.4
    #: a process that got nothing through for this many seconds since its last event, and is
    #: refused again, takes that as a new event: in a crowd its cubic would otherwise climb on
    refused_for = 1.0

    def __init__(
        self,
        *,
        max_rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if max_rate is not None and not max_rate > 0:
            raise ValueError(f"rows_per_second must be positive, got {max_rate!r}")
        self.max_rate = max_rate
        self._clock = clock
        self._sleep = sleep
        self._rand = rand
        self._lock = threading.Lock()
        self._ref: float | None = None  # rows/s of the last event; None: never throttled yet
        self._started: float | None = None  # the first claim (or answer): the start of the ramp
        self._alone = False
        self._k = 0.0  # seconds from the event back to the reference along the cubic
        self._since = _NEVER  # time of the last congestion event
        self._next_slot = _NEVER  # when the next request may go (GCRA's theoretical arrival time)
        self._accepted = 0  # rows accepted, ever
        self._accepted_then = 0  # ... by the last event
        self._through = False  # a request was accepted since the last event
        self._measured: float | None = None  # the last measurement (rows/s), if any
        self._log: deque[tuple[float, int, bool]] = deque(maxlen=1024)  # (time, rows, accepted)
        #: throttled answers seen (echoes included), and congestion events reacted to
        self.throttles = 0
        self.events = 0

    # ------------------------------------------------------------------ state

    @property
    def rate(self) -> float:
        """The pacing rate now in rows/s."""
        with self._lock:
            return self._rate(self._clock())

    @property
    def quota(self) -> float | None:
        """The rate of the last congestion event (rows/s): this process's share of the quota, all of
        it when alone; None before the first throttle."""
        return self._ref

    @property
    def mode(self) -> str:
        """``starting`` (before the first 429), ``shared`` (cubic after a decrease) or ``alone``
        (the quota measured twice)."""
        if self._ref is None:
            return "starting"
        return "alone" if self._alone else "shared"

    def _rate(self, now: float) -> float:
        ref = self._ref
        if ref is None:
            # The start: the documented default, doubling every half second, and within twice
            # what was sent lately (a process with little to send does not grow a rate it never
            # tested).
            started = self._started if self._started is not None else now
            rate: float = self.initial * self.start_growth ** (now - started)
            rate = min(rate, max(self.headroom * self._sent_rate(now, self.start_span), self.initial))
        else:
            rate = ref
            elapsed = now - self._since
            if self._alone:
                rate *= self.calm
                if elapsed > self.calm_time:
                    rate += self.calm_scale * (elapsed - self.calm_time) ** 3
            else:
                rate += self.scale * (elapsed - self._k) ** 3
            # Not above twice what was sent lately (when the process sends less than it may,
            # the curve would otherwise grow on without being tested), nor below the reference.
            rate = min(rate, max(self.headroom * self._sent_rate(now), ref))
        if self.max_rate is not None:
            rate = min(rate, self.max_rate)
        return rate

    def _sent_rate(self, now: float, span: float | None = None) -> float:
        """Rows sent (answered) per second over the last ``span`` seconds (by default a second)."""
        span = span or self.window
        edge, sent = now - span, 0
        for t, rows, _ in reversed(self._log):
            if t < edge:
                break
            sent += rows
        return sent / span

    # ------------------------------------------------------------------ pacing

    def try_acquire(self, rows: int) -> tuple[float | None, float]:
        """Claim the slot for ``rows`` rows if it has come: ``(ticket, 0.0)``, else ``(None, wait)``.

        Never blocks. The ticket (the time of the claim) goes back to ``on_throttle``.
        """
        with self._lock:
            now = self._clock()
            rate = self._rate(now)
            if now < self._next_slot:
                return None, self._next_slot - now
            if self._started is None:  # the first claim starts the ramp
                self._started = now
                if self.max_rate is not None and rate >= self.max_rate:
                    # Capped from the start: begin at a random point of the first interval, so
                    # that tasks capped alike and started together do not all arrive at once.
                    self._next_slot = now + self._rand() * rows / rate
                    return None, self._next_slot - now
            # From the theoretical time, not from now: a late wake-up is not a slower rate.
            start = self._next_slot if self._next_slot > now - rows / rate else now
            self._next_slot = start + rows / rate
            return now, 0.0

    def acquire(self, rows: int, sleep: Callable[[float], None] | None = None) -> float:
        """Wait until ``rows`` may be sent; returns the ticket to pass to ``on_throttle``."""
        sleep = sleep or self._sleep
        while True:
            ticket, wait = self.try_acquire(rows)
            if ticket is not None:
                return ticket
            before = self._clock()
            sleep(wait)
            if self._clock() - before < wait / 2:
                # The sleep given did not let the time pass (a test's stand-in): take the slot
                # rather than spin.
                with self._lock:
                    self._next_slot += rows / self._rate(self._clock())
                    return self._clock()

    # ------------------------------------------------------------------ feedback

    def on_success(self, rows: int) -> None:
        now = self._clock()
        with self._lock:
            if self._started is None:  # answered without a claim (tests): the start is now
                self._started = now
            self._accepted += rows
            self._through = True
            self._log.append((now, rows, True))

    def on_throttle(self, ticket: float, rows: int = 0) -> bool:
        """A 429 for a request sent at ``ticket``; True if it was a new congestion event.

        ``rows`` is the throttled request's: the bucket needs that long to cover it again.
        """
        rows = max(rows, 1)
        with self._lock:
            now = self._clock()
            self.throttles += 1
            self._log.append((now, rows, False))
            capped = self.max_rate is not None and self._rate(now) >= self.max_rate
            new = self._congestion(now, ticket, rows)
            if capped and self.max_rate is not None:
                # Processes capped alike send at the same interval, so their phases stay where
                # they started: one that keeps arriving just after the others have emptied the
                # bucket would be refused every time until they finish. Move this one's next
                # request to a random point of its interval.
                self._next_slot = max(self._next_slot, now) + self._rand() * rows / self.max_rate
            return new

    def _congestion(self, now: float, ticket: float, rows: int) -> bool:
        """React to a 429 (the lock held): True if it was a new congestion event."""
        if ticket <= self._since:
            return False  # sent before the last event: an echo of the same congestion
        if self._ref is not None and not self._through and now - self._since < self.refused_for:
            return False  # nothing got through since the decrease: not ours to slow down (yet)
        ref, self._alone = self._reference(now, rows)
        self._ref = ref
        self._k = 0.0 if self._alone else (ref * (1.0 - self.beta) / self.scale) ** (1 / 3)
        self.events += 1
        self._since = now
        self._accepted_then = self._accepted
        self._through = False
        # The bucket was just found empty: the next request waits until it can cover one,
        # and sharing, a moment more, so that the others' requests find a cushion.
        self._next_slot = now + max(rows / self._rate(now), self._pause(ref))
        return True

    def _pause(self, ref: float) -> float:
        """Seconds to send nothing after a congestion event at the reference ``ref``."""
        if self._alone:
            return 0.0
        return self.pause * max(0.0, 1.0 - ref / self.initial)

    def _reference(self, now: float, rows: int) -> tuple[float, bool]:
        """The rate of this congestion event, and whether the quota looks like ours alone."""
        if self._ref is None:
            # First event: this process's part of all that was accepted since the start (the
            # full bucket, then the quota), which is about the same for processes that started
            # together. Above the documented default, the quota was raised and the bucket may
            # have overflowed while the start was slow: the last second is then the better guess.
            started = self._started if self._started is not None else now
            share = self._accepted / (now - started + self.burst)
            if share > self.initial:
                edge = now - self.window
                share = max(share, sum(n for t, n, ok in self._log if ok and t >= edge) / self.window)
            return max(share, rows), False
        current = self._rate(now)
        span = now - self._since
        got = self._accepted - self._accepted_then
        if got < self.min_requests * rows or span <= 0:
            # Too little since the last event to measure: slow down from where we are.
            self._measured = None
            return current, False
        measured = got / span
        previous = self._measured
        self._measured = measured if got >= self.precise_requests * rows else None
        alone = (
            previous is not None
            and self._measured is not None
            and abs(measured - previous) <= self.agree * previous
        )
        if alone:
            return measured, True  # the quota itself
        # From what we got, not from what we asked for; and if we had the quota alone and now
        # got less, someone started: make room for one (half) rather than keep it from them.
        ref = min(current, measured)
        if self._alone and measured < self._ref:
            ref = max(self.give * ref, rows)
        return ref, False


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
