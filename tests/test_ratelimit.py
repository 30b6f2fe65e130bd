"""AdaptiveRateLimiter with a fake clock: no sleeps, no timing assertions.

The last tests run a discrete-event simulation of the service's token bucket (the
local server's model: refilled at the quota, holding one second of it; a 429 takes
nothing) with processes of concurrent workers and network latency, each process with
a limiter of its own (they share nothing but the bucket), on one fake clock.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
import threading
from itertools import pairwise

import pytest

from airflow_provider_vikingdb.local.store import TokenBucket
from airflow_provider_vikingdb.ratelimit import AdaptiveRateLimiter, limiter_for
from airflow_provider_vikingdb.transport import DEFAULT_THROTTLE_RETRIES


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def limiter(clock: FakeClock, **kwargs) -> AdaptiveRateLimiter:
    return AdaptiveRateLimiter(clock=clock, sleep=clock.sleep, **kwargs)


def accept(lim: AdaptiveRateLimiter, clock: FakeClock, rows_per_second: float, seconds: float) -> None:
    """Requests of 100 rows accepted at a steady rate for ``seconds``."""
    step = 100 / rows_per_second
    for _ in range(round(seconds / step)):
        clock.now += step
        lim.on_success(100)


def send_as_paced(lim: AdaptiveRateLimiter, clock: FakeClock, seconds: float) -> int:
    """Requests of 100 rows sent as fast as the limiter lets them, all accepted: how many."""
    end, sent = clock.now + seconds, 0
    while True:
        ticket, wait = lim.try_acquire(100)
        if ticket is None:
            if clock.now + wait > end:
                clock.now = end
                return sent
            clock.now += wait
            continue
        lim.on_success(100)
        sent += 1


def measured_twice(lim: AdaptiveRateLimiter, clock: FakeClock, quota: float) -> None:
    """A first throttle, then two cycles in which exactly ``quota`` rows/s got through."""
    accept(lim, clock, quota, 2)
    lim.on_throttle(clock.now, 100)
    for _ in range(2):
        accept(lim, clock, quota, 6)
        lim.on_throttle(clock.now, 100)


def shared_at(lim: AdaptiveRateLimiter, clock: FakeClock, share: float) -> bool:
    """A first throttle, then 10 s in which ``share`` rows/s got through, ended by a throttle:
    whether that was a congestion event."""
    accept(lim, clock, 1500, 2)
    lim.on_throttle(clock.now, 100)
    accept(lim, clock, share, 10)
    return lim.on_throttle(clock.now, 100)


# ------------------------------------------------------------------ pacing


def test_the_start_is_paced_at_the_documented_default_and_doubles_every_half_second(clock):
    lim = limiter(clock)
    assert lim.mode == "starting" and lim.rate == 1500  # the default write quota, vikingdb-api.md 5
    sent = send_as_paced(lim, clock, 2.0)
    # 1500 rows/s doubling every half second: 1500 * (4**2 - 1) / ln 4 = 16 200 rows in 2 s
    assert 150 <= sent <= 170
    assert lim.rate == pytest.approx(1500 * 4**2, rel=0.05)
    assert lim.mode == "starting" and lim.events == 0


def test_the_ramp_starts_at_the_first_claim_not_when_the_rate_is_read(clock):
    other = FakeClock()
    fresh = send_as_paced(limiter(other), other, 1.0)  # the first second of a ramp
    lim = limiter(clock)
    assert lim.rate == 1500
    clock.now += 10  # a rate read long before anything is sent starts nothing
    assert send_as_paced(lim, clock, 1.0) == fresh


def test_the_start_does_not_grow_a_rate_it_never_used(clock):
    lim = limiter(clock)
    send_as_paced(lim, clock, 0.5)
    clock.now += 10  # nothing to send for a while
    assert lim.rate == 1500  # not 1500 * 4**10.5: within twice what was sent lately, or the default


def test_a_fixed_cap_spaces_requests_by_their_rows(clock):
    lim = limiter(clock, max_rate=1000, rand=lambda: 0.25)
    slots = []
    for _ in range(5):
        slots.append(lim.acquire(100))
    # The first at a random point of its interval (a quarter of 0.1 s here), then 0.1 s apart.
    assert slots == pytest.approx([1000.025 + 0.1 * n for n in range(5)])
    assert clock.slept == pytest.approx([0.025] + [0.1] * 4)


def test_a_capped_limiter_moves_its_next_request_after_a_429_at_the_cap(clock):
    def next_send(shift: float) -> float:
        draws = iter([0.0, shift])  # the start (at once), then the 429
        clock = FakeClock(0.0)
        lim = limiter(clock, max_rate=100, rand=lambda: next(draws))
        ticket = lim.acquire(100)
        clock.now += 0.03
        lim.on_throttle(ticket, 100)
        return clock.now + lim.try_acquire(100)[1]

    # Half of its interval (1 s at 100 rows/s of 100-row requests) later than without the draw.
    assert next_send(0.5) - next_send(0.0) == pytest.approx(0.5)
    assert next_send(0.0) > 1.0  # and never before its slot


def test_an_uncapped_limiter_draws_nothing(clock):
    def draw() -> float:
        raise AssertionError("drew")

    lim = limiter(clock, rand=draw)
    accept(lim, clock, 1500, 3)
    lim.on_throttle(lim.acquire(100), 100)
    send_as_paced(lim, clock, 2.0)


def test_max_rate_must_be_positive(clock):
    with pytest.raises(ValueError, match="positive"):
        limiter(clock, max_rate=0)


def test_a_sleep_that_does_not_wait_takes_the_slot_instead_of_spinning(clock):
    lim = limiter(clock, max_rate=10, rand=lambda: 0.0)
    lim.acquire(100)
    waits: list[float] = []
    lim.acquire(100, sleep=waits.append)  # a stand-in that returns at once, as in some tests
    assert waits == pytest.approx([10.0])
    send_at = clock.now + lim.try_acquire(100)[1]
    assert send_at == pytest.approx(1020.0)  # the slot taken is not given out again


def test_a_rate_that_grows_is_used_by_workers_already_waiting(clock):
    lim = limiter(clock)
    accept(lim, clock, 150, 2)
    lim.on_throttle(clock.now, 100)  # a tiny first guess: 300 rows over 2 s + the 1 s burst
    assert lim.try_acquire(100)[0] is None
    sent = send_as_paced(lim, clock, 6)
    # no slot was booked ahead at the first guess's pace: the cubic's growth is used at once
    assert sent * 100 > 6 * 300 and lim.rate > 1000


# ------------------------------------------------------------------ congestion events


def test_first_throttle_takes_this_process_part_of_all_accepted_since_the_start(clock):
    # The bucket started full (1 s of quota) and was refilled at the quota since: 3 s after the
    # start, 4 s of quota were accepted in all, 3 s * 1125 rows/s of it by this process.
    lim = limiter(clock)
    accept(lim, clock, 1125, 3)
    assert lim.on_throttle(clock.now, 100) is True
    assert lim.mode == "shared" and lim.events == 1
    assert lim.quota == pytest.approx(1125 * 3 / 4, rel=0.03)
    assert lim.rate == pytest.approx(lim.beta * lim.quota)  # multiplicative decrease
    # the bucket was just found empty, and this process shares it: the next request waits for the
    # pause of a share of about 840 rows/s (longer than one request's worth of refill)
    ticket, wait = lim.try_acquire(100)
    assert ticket is None and wait == pytest.approx(lim.pause * (1 - lim.quota / 1500))
    assert wait > 100 / lim.rate


def test_sharing_a_process_pauses_after_a_congestion_event_the_longer_the_smaller_its_share():
    waits = []
    for share in (750, 375, 150):
        clock = FakeClock(100.0)
        lim = limiter(clock)
        accept(lim, clock, share * 4 / 3, 3)  # the first share: 3 s of this, over 4 s of quota
        assert lim.on_throttle(clock.now, 100) is True
        assert lim.quota == pytest.approx(share, rel=0.15)  # 100-row requests quantize it
        ticket, wait = lim.try_acquire(100)
        assert ticket is None and wait == pytest.approx(1.4 * (1 - lim.quota / 1500))
        waits.append(wait)
        clock.now += wait
        assert lim.try_acquire(100)[0] is not None  # then at the cut rate again
    assert waits[0] == pytest.approx(0.7, rel=0.05)
    assert waits == sorted(waits) and waits[2] > 1.2


def test_no_pause_at_or_above_the_documented_quota(clock):
    # A share above 1500 rows/s (a raised quota) waits for one request's worth of refill only.
    lim = limiter(clock)
    accept(lim, clock, 2400, 3)
    assert lim.on_throttle(clock.now, 100) is True
    assert lim.mode == "shared" and lim.quota > 1500
    ticket, wait = lim.try_acquire(100)
    assert ticket is None and wait == pytest.approx(100 / lim.rate)


def test_first_throttle_above_the_documented_default_takes_the_last_second(clock):
    # More than the default quota could ever give: the quota was raised, and the bucket may
    # have overflowed during the slow start, so what came through lately is the better guess.
    lim = limiter(clock)
    accept(lim, clock, 6000, 3)
    lim.on_throttle(clock.now, 100)
    assert lim.quota == pytest.approx(6000, rel=0.03)


def test_processes_started_together_take_about_the_same_first_share():
    # The old first guess (the last second's rows) differed by 2x between such processes.
    for seed in (1, 2, 3):
        runs = simulate([(15_000, 0.003 * p) for p in range(4)], quota=1500, seed=seed)
        # the paced start runs the bucket dry with about one request each in flight (the
        # unpaced start had eight: eight 429s each)
        assert all(sum(1 for t in r["throttled_at"] if t < r["start"] + 1) <= 2 for r in runs)
        firsts = [r["first_quota"] for r in runs]
        assert max(firsts) <= 1.5 * min(firsts), firsts
        assert sum(firsts) == pytest.approx(1500, rel=0.25)


def test_concurrent_echoes_of_one_congestion_count_once(clock):
    lim = limiter(clock)
    accept(lim, clock, 1500, 2)
    # eight requests in flight, sent before the first 429 came back
    tickets = [lim.acquire(100) for _ in range(8)]
    assert lim.on_throttle(tickets[0], 100) is True
    rate = lim.rate
    clock.now += 0.02
    assert [lim.on_throttle(t, 100) for t in tickets[1:]] == [False] * 7
    assert lim.throttles == 8 and lim.events == 1
    assert lim.rate == pytest.approx(rate, rel=0.05)  # not eight slow-downs


def test_a_process_refused_since_its_decrease_does_not_collapse(clock):
    lim = limiter(clock)
    accept(lim, clock, 1500, 2)
    lim.on_throttle(clock.now, 100)
    rate = lim.rate
    for _ in range(4):  # a neighbour holds the bucket empty: every request of ours is refused
        clock.now += 0.2
        assert lim.on_throttle(clock.now, 100) is False
    assert lim.events == 1 and lim.throttles == 5
    assert lim.rate >= rate  # the old limiter halved (or worse) on each: ~0 rows/s
    accept(lim, clock, 600, 1)  # once through, the next 429 is a new event again
    assert lim.on_throttle(clock.now, 100) is True


def test_a_process_refused_for_a_whole_second_cuts_again_but_at_most_once_a_second(clock):
    # In a crowd a process may get nothing through for seconds. Ignoring every 429 until one
    # request passed let its cubic climb on with time: from 16 processes on, every process did,
    # 78-99 % of requests were refused, and one batch up to 522 times (past the hook's 60).
    lim = limiter(clock)
    accept(lim, clock, 1500, 2)
    lim.on_throttle(clock.now, 100)
    rates = [lim.rate]
    for _ in range(15):  # refused every 0.2 s for 3 s
        clock.now += 0.2
        if lim.on_throttle(clock.now, 100):
            rates.append(lim.rate)
    assert lim.events == 1 + 3  # one a second
    assert rates == sorted(rates, reverse=True)  # each cut from where it was
    assert rates[-1] >= AdaptiveRateLimiter.beta**3 * rates[0] * 0.99  # by beta each: no collapse


def test_the_share_is_measured_between_two_congestion_events(clock):
    lim = limiter(clock)
    # while throttled, the bucket gave this process exactly its share: 700 rows/s, say
    assert shared_at(lim, clock, 700) is True
    assert lim.quota == pytest.approx(700, rel=0.01)
    assert lim.mode == "shared" and lim.rate == pytest.approx(lim.beta * 700, rel=0.01)


def test_after_an_event_the_rate_climbs_back_then_probes_ever_faster(clock):
    lim = limiter(clock)
    shared_at(lim, clock, 750)
    ref, start = lim.quota, clock.now
    back = (ref * (1 - lim.beta) / lim.scale) ** (1 / 3)  # seconds back to the reference
    rates = {}
    for t in (0.0, back / 2, back, back + 1, back + 2, back + 3):
        send_as_paced(lim, clock, start + t - clock.now)
        rates[t] = lim.rate
    assert rates[0.0] == pytest.approx(lim.beta * ref, rel=0.01)
    assert lim.beta * ref < rates[back / 2] < ref
    assert rates[back] == pytest.approx(ref, rel=0.01)
    # then faster and faster, the same rows/s for every process whatever its share
    assert rates[back + 1] - ref == pytest.approx(lim.scale, rel=0.05)
    assert rates[back + 2] - ref == pytest.approx(8 * lim.scale, rel=0.05)
    assert rates[back + 3] > 2 * ref  # the quota freed by a neighbour is taken up within seconds


def test_two_agreeing_measurements_mean_alone_pace_just_under_the_quota(clock):
    lim = limiter(clock)
    measured_twice(lim, clock, 1500)
    assert lim.mode == "alone" and lim.quota == pytest.approx(1500, rel=0.01)
    start = clock.now
    assert lim.rate == pytest.approx(lim.calm * 1500, rel=0.01)  # no decrease: the quota is known
    send_as_paced(lim, clock, lim.calm_time - 0.5)
    assert lim.rate == pytest.approx(lim.calm * 1500, rel=0.01)  # flat ...
    send_as_paced(lim, clock, start + lim.calm_time + 2 - clock.now)
    assert lim.rate > 1500  # ... then probing: a raised quota is found


def test_a_newcomer_breaks_the_agreement(clock):
    lim = limiter(clock)
    measured_twice(lim, clock, 1500)
    accept(lim, clock, 750, 6)  # a second process took half of it
    lim.on_throttle(clock.now, 100)
    # shared, and room for the newcomer: half of the 750 rows/s this process got since
    assert lim.mode == "shared" and lim.quota == pytest.approx(375, rel=0.01)
    assert lim.rate == pytest.approx(lim.beta * 375, rel=0.01)


def test_more_quota_breaks_the_agreement_without_giving_any_up(clock):
    lim = limiter(clock)
    measured_twice(lim, clock, 1500)
    accept(lim, clock, 2000, 6)  # the quota was raised: more got through than measured alone
    lim.on_throttle(clock.now, 100)
    # not halved: the reference is the rate of the moment (what was asked for, lower than what got
    # through), and the cubic goes on from it
    assert lim.mode == "shared" and lim.quota == pytest.approx(lim.calm * 1500, rel=0.01)


def test_sharing_from_the_start_gives_up_nothing_more(clock):
    # Only a process that had the quota alone halves: one that shares keeps what it measured.
    lim = limiter(clock)
    shared_at(lim, clock, 600)
    assert lim.mode == "shared" and lim.quota == pytest.approx(600, rel=0.01)


def test_a_process_sending_less_than_it_may_does_not_let_its_rate_run_away(clock):
    lim = limiter(clock)
    shared_at(lim, clock, 300)
    assert lim.quota == pytest.approx(300, rel=0.01)
    accept(lim, clock, 200, 30)  # the job sends little for a long time, never throttled
    # the cubic alone would be at millions of rows/s by now: a burst waiting to happen; it is
    # held to twice what was sent over the last second (two or three requests of 100 rows here)
    assert lim.rate <= lim.headroom * (200 + 100)


def test_the_cap_bounds_the_learned_rate(clock):
    lim = limiter(clock, max_rate=500)
    accept(lim, clock, 500, 2)
    lim.on_throttle(clock.now, 100)
    send_as_paced(lim, clock, 100)
    assert lim.rate == 500


def test_a_capped_limiter_still_slows_down_when_another_writer_takes_the_quota(clock):
    # docs/performance.md: "if another writer turns up, the hook still adapts below it (the cap
    # only bounds the rate)". 400 rows/s got through, then a 429: well under the cap of 1000.
    lim = limiter(clock, max_rate=1000, rand=lambda: 0.0)
    accept(lim, clock, 400, 3)
    lim.on_throttle(clock.now, 100)
    assert lim.rate < 500


def test_one_limiter_per_collection_and_cap():
    a = limiter_for("http://h:1", "coll", None)
    assert limiter_for("http://h:1", "coll", None) is a
    assert limiter_for("http://h:1", "other", None) is not a
    assert limiter_for("http://h:1", "coll", 100.0) is not a


def test_every_thread_of_the_process_shares_the_collections_limiter():
    # docs/performance.md: "Adaptive rate limit, one per collection and process": the workers of a
    # batched call, and two tasks of one process writing to the collection, run in other threads.
    a = limiter_for("http://h:2", "coll", None)
    from_threads = []
    workers = [
        threading.Thread(target=lambda: from_threads.append(limiter_for("http://h:2", "coll", None)))
        for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(from_threads) == 3 and all(limiter is a for limiter in from_threads)


# ------------------------------------------------------------------ simulated runs


def simulate(
    processes: list[tuple[int, float]],
    *,
    quota: float | None,
    concurrency: int = 8,
    latency: float = 0.030,
    quota_changes: tuple[tuple[float, float], ...] = (),
    seed: int = 1,
    max_rate: float | None = None,
    burst: float = 1.0,
) -> list[dict]:
    """Processes ``(ids, start)`` deleting their ids in batches of 100 against one token bucket.

    Each process has ``concurrency`` workers and a limiter of its own (capped at ``max_rate``,
    the hook's ``rows_per_second``, if given). Like the hook, a
    worker claims a slot, sends, and on a 429 claims again (no other backoff). Latency
    varies by up to 30 %; the bucket is the local server's, holding ``burst`` seconds of quota
    (its ``quota_burst``) and starting full.
    """
    rng = random.Random(seed)
    clock = FakeClock(0.0)
    draws = random.Random(-seed)  # the limiters' own (only capped ones draw)

    def make_limiter() -> AdaptiveRateLimiter:
        return AdaptiveRateLimiter(max_rate=max_rate, clock=clock, sleep=clock.sleep, rand=draws.random)

    bucket = None if quota is None else TokenBucket(quota, 0.0, burst)  # the local server's
    changes = list(quota_changes)
    events: list = []
    order = itertools.count()
    runs = []
    for ids, start in processes:
        runs.append(
            {"limiter": make_limiter(), "batches": iter(range(ids // 100)), "ids": ids, "start": start}
            | {"end": start, "accepted": [], "attempts": 0, "throttled": 0, "rows": 0, "throttled_at": []}
            | {"most_429s": 0}  # the most 429s one batch got before it passed
        )

    def at(time: float, *event) -> None:
        heapq.heappush(events, (time, next(order), event))

    for p, (_, start) in enumerate(processes):
        for worker in range(concurrency):
            at(start + 0.002 * worker * rng.random(), "next", p, None)
    while events:
        clock.now, _, (kind, p, arg) = heapq.heappop(events)
        while bucket is not None and changes and changes[0][0] <= clock.now:
            bucket.set_rate(changes.pop(0)[1], clock.now)
        run = runs[p]
        lim = run["limiter"]
        if kind == "next":
            if next(run["batches"], None) is not None:
                at(clock.now, "claim", p, 0)  # the batch's 429s so far
        elif kind == "claim":
            ticket, wait = lim.try_acquire(100)
            if ticket is None:
                at(clock.now + wait, "claim", p, arg)
            else:
                at(clock.now + latency * (1 + 0.3 * rng.random()), "arrive", p, (ticket, arg))
        elif kind == "arrive":
            accepted = bucket is None or bucket.take(100, clock.now)
            at(clock.now + 0.001 + 0.002 * rng.random(), "answer", p, (arg, accepted))
        elif kind == "answer":
            (ticket, refused), accepted = arg
            run["attempts"] += 1
            if accepted:
                lim.on_success(100)
                run["rows"] += 100
                run["end"] = clock.now
                run["accepted"].append(clock.now)
                at(clock.now, "next", p, None)
            else:
                run["throttled"] += 1
                run["throttled_at"].append(clock.now)
                run["most_429s"] = max(run["most_429s"], refused + 1)
                if lim.on_throttle(ticket, 100) and lim.events == 1:
                    run["first_quota"] = lim.quota
                at(clock.now, "claim", p, refused + 1)
    return runs


class LinearClimb(AdaptiveRateLimiter):
    """AIMD instead of the cubic: from ``beta`` x the reference, a linear climb of ``slope`` rows/s
    a second, the same for every share (the pause, the start and the alone mode as shipped). The
    module docstring's reason for the cubic; bench/shared_quota_sim.py shows it in its table."""

    slope = 400.0

    def _rate(self, now: float) -> float:
        ref = self._ref
        if ref is None or self._alone:
            return super()._rate(now)
        rate = ref * self.beta + self.slope * (now - self._since)
        rate = min(rate, max(self.headroom * self._sent_rate(now), ref))
        return rate if self.max_rate is None else min(rate, self.max_rate)


def fair_shares(runs: list[dict], quota: float) -> list[float]:
    """Each process's rows over an equal split of the quota among the processes running."""
    edges = sorted({r["start"] for r in runs} | {r["end"] for r in runs})
    shares = []
    for r in runs:
        fair = 0.0
        for a, b in pairwise(edges):
            if r["start"] <= a and b <= r["end"]:
                fair += (b - a) * quota / sum(1 for o in runs if o["start"] <= a and b <= o["end"])
        shares.append(r["rows"] / fair)
    return shares


def seconds_to_reach(run: dict, since: float, rate: float, window: float = 1.0) -> float:
    """Seconds from ``since`` until the run's accepted rows over the last ``window`` reach ``rate``
    rows/s (inf if never)."""
    times = run["accepted"]
    for k in range(bisect.bisect_left(times, since), len(times)):
        if 100 * (k - bisect.bisect_right(times, times[k] - window) + 1) >= rate * window:
            return times[k] - since
    return float("inf")


def seconds_to_take_up(survivor: dict, freed_at: float, quota: float) -> float:
    """Seconds from ``freed_at`` until the survivor's accepted rows over the last second reach 90 %."""
    return seconds_to_reach(survivor, freed_at, 0.9 * quota)


def combined(runs: list[dict], quota: float, burst: float = 1.0) -> float:
    """The time the quota allows for all the rows (the bucket's ``burst`` seconds aside) / the time taken."""
    total = sum(r["ids"] for r in runs)
    return (total - quota * burst) / quota / (max(r["end"] for r in runs) - min(r["start"] for r in runs))


def throttled(runs: list[dict]) -> float:
    return sum(r["throttled"] for r in runs) / sum(r["attempts"] for r in runs)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_simulated_quota_run_keeps_up_with_the_quota(seed):
    # 60 000 ids at 1500 rows/s with a 1500-row burst: the quota allows (60000 - 1500) / 1500 = 39 s.
    (run,) = simulate([(60_000, 0.0)], quota=1500, seed=seed)
    assert run["rows"] == 60_000
    assert combined([run], 1500) >= 0.97
    assert run["throttled"] / run["attempts"] <= 0.02
    assert run["limiter"].mode == "alone"
    assert run["limiter"].quota == pytest.approx(1500, rel=0.03)


def test_simulated_raised_quota_is_reached():
    (run,) = simulate([(600_000, 0.0)], quota=15_000, concurrency=32)
    assert run["rows"] == 600_000
    # The start from the documented 1500 rows/s takes about 1.7 s to reach 15 000 (99 % when
    # the start was unpaced, at the cost of eight 429s a process sharing the default quota).
    assert combined([run], 15_000) >= 0.96
    assert run["throttled"] / run["attempts"] <= 0.02


def test_simulated_no_quota_is_reached_within_two_seconds():
    (run,) = simulate([(60_000, 0.0)], quota=None)
    assert run["throttled"] == 0 and run["limiter"].mode == "starting"
    times = run["accepted"]
    # eight requests in flight all the time once the start has grown past what they can send
    # (8 / ~35 ms = ~220 requests a second), 2 s after the start: over 200 in the third second
    assert sum(1 for t in times if 2.0 <= t < 3.0) >= 200
    assert run["end"] < 2.0 + 600 / 8 * 0.040


def test_simulated_quota_lowered_mid_run_is_followed():
    (run,) = simulate([(40_000, 0.0)], quota=1500, quota_changes=((10.0, 750.0),))
    assert run["rows"] == 40_000  # nothing lost
    assert run["limiter"].quota == pytest.approx(750, rel=0.1)


def test_simulated_quota_raised_mid_run_is_found():
    (run,) = simulate([(200_000, 0.0)], quota=1500, quota_changes=((10.0, 3000.0),))
    assert run["rows"] == 200_000
    assert run["limiter"].quota > 2000


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("count", [2, 3, 4, 6, 8])
def test_simulated_processes_sharing_a_quota_converge_to_fair_shares(count, seed):
    # Started a few ms apart, as released workers are: the first drains the burst alone.
    # The old limiter left one of four at ~10-20 % of its share for most of the run.
    runs = simulate([(60_000 // count, 0.003 * p) for p in range(count)], quota=1500, seed=seed)
    assert all(r["rows"] == r["ids"] for r in runs)  # nothing lost
    assert min(fair_shares(runs, 1500)) >= 0.6
    assert combined(runs, 1500) >= 0.92
    # Every process probes on its own: 429s grow with the number of processes (start included),
    # at most 3 % of requests per process (docs/performance.md: 3.5 % at 2 on the bench, 20 % at 8).
    assert throttled(runs) <= 0.03 * count


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("count", [16, 24, 32])
def test_simulated_crowd_of_processes_does_not_refuse_a_batch_past_the_hooks_budget(count, seed):
    # 16 mapped tasks (Airflow's default max_active_tasks) or more on one collection: a share of
    # a batch a second or less. Before, a process that got nothing through never cut its rate
    # again and its cubic climbed on: 78-99 % of requests refused, one batch up to 522 times,
    # past the hook's budget of 60 (the batch, and its task, failed).
    runs = simulate([(100 * (600 // count), 0.003 * p) for p in range(count)], quota=1500, seed=seed)
    assert all(r["rows"] == r["ids"] for r in runs)
    assert max(r["most_429s"] for r in runs) <= DEFAULT_THROTTLE_RETRIES // 2
    assert throttled(runs) <= 0.6
    assert combined(runs, 1500) >= 0.9
    assert min(fair_shares(runs, 1500)) >= 0.25


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("count", [2, 4, 6, 8])
def test_simulated_processes_capped_at_a_fair_share_are_not_throttled(count, seed):
    # What docs/performance.md tells a user who knows how many tasks share a collection: with
    # rows_per_second = quota / N, nothing probes above the fair share, from the first request on.
    procs = [(60_000 // count, 0.003 * p) for p in range(count)]
    runs = simulate(procs, quota=1500, seed=seed, max_rate=1500 / count)
    assert all(r["rows"] == r["ids"] for r in runs)
    assert throttled(runs) == 0
    assert combined(runs, 1500) >= 0.95
    assert min(fair_shares(runs, 1500)) >= 0.97


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_simulated_lone_delete_capped_just_under_the_quota_keeps_up_with_a_small_bucket(seed):
    # docs/performance.md, "When the service allows a smaller burst": the service's bucket is not
    # documented. With 0.2 s of quota (3 batches at 1500 rows/s), a pause or a cut the adaptive
    # limiter makes is not banked, it measures less than the quota and gets about 76 % of it;
    # rows_per_second at 98 % of the quota gets 97.5 % with no 429.
    (adaptive,) = simulate([(60_000, 0.0)], quota=1500, seed=seed, burst=0.2)
    (capped,) = simulate([(60_000, 0.0)], quota=1500, seed=seed, burst=0.2, max_rate=1470)
    assert adaptive["rows"] == capped["rows"] == 60_000
    assert capped["throttled"] == 0
    assert combined([capped], 1500, burst=0.2) >= 0.97
    assert combined([adaptive], 1500, burst=0.2) < combined([capped], 1500, burst=0.2) - 0.1


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("count", [2, 4])
def test_simulated_tasks_capped_at_a_fair_share_keep_up_with_a_small_bucket(count, seed):
    # The cap at the quota / N holds where the bucket holds 0.2 s of quota (adapting, 2 and 4
    # processes get 70-76 % of the quota there: docs/performance.md).
    procs = [(60_000 // count, 0.003 * p) for p in range(count)]
    runs = simulate(procs, quota=1500, seed=seed, max_rate=1500 / count, burst=0.2)
    assert all(r["rows"] == r["ids"] for r in runs)
    assert combined(runs, 1500, burst=0.2) >= 0.9
    assert min(fair_shares(runs, 1500)) >= 0.8
    assert throttled(runs) <= 0.01


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(
    ("count", "ids", "quota", "lowest"), [(16, 3000, 1500, 0.8), (24, 2000, 1500, 0.75), (4, 1200, 300, 0.6)]
)
def test_simulated_tasks_capped_alike_and_started_together_do_not_lock_one_out(
    count, ids, quota, lowest, seed
):
    # More tasks than the bucket holds batches (15 at 1500 rows/s; 3 at 300), started at once and
    # capped at the quota / N: before, the last to arrive was refused at the same moment of every
    # interval until the others finished (16 tasks: 61 % of its share, 24: 2 %, 4 at 300: 20 %).
    runs = simulate([(ids, 0.003 * p) for p in range(count)], quota=quota, seed=seed, max_rate=quota / count)
    assert all(r["rows"] == r["ids"] for r in runs)
    assert min(fair_shares(runs, quota)) >= lowest


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_simulated_late_joiner_gets_its_share_within_seconds(seed):
    # A rollback started during a long retention: the first had the quota alone for 10 s. The
    # newcomer finds the bucket empty and starts from about 100 rows/s; the old limiter left it
    # there for 12.6 s (median; 31.7 s worst) before it had 80 % of its fair 750 rows/s.
    first, late = simulate([(60_000, 0.0), (15_000, 10.0)], quota=1500, seed=seed)
    assert first["rows"] == 60_000 and late["rows"] == 15_000
    assert seconds_to_reach(late, 10.0, 0.8 * 750, window=2.0) <= 8.0
    assert fair_shares([first, late], 1500)[1] >= 0.7


@pytest.mark.parametrize("count", [2, 4])
def test_simulated_pause_after_a_429_saves_the_others_requests(count, monkeypatch):
    # Most 429s in a crowd come in clusters at a bucket that runs dry; the pause leaves a cushion
    # in it. Over the same five seeds, a quarter fewer 429s than the same limiter without it.
    def throttles() -> int:
        procs = [(60_000 // count, 0.003 * p) for p in range(count)]
        return sum(r["throttled"] for seed in range(1, 6) for r in simulate(procs, quota=1500, seed=seed))

    paused = throttles()
    monkeypatch.setattr(AdaptiveRateLimiter, "pause", 0.0)
    assert paused <= 0.85 * throttles()


def test_simulated_quota_freed_by_a_neighbour_is_taken_up_within_seconds():
    # One stops early. The old limiter left the survivor at its share (about half) to the end
    # in about a third of these runs; when it did take the quota up, it took 2 s.
    taken = []
    for seed, offset in itertools.product(range(1, 11), (0.003, 0.02)):
        long, short = simulate([(20_000, 0.0), (5_000, offset)], quota=1500, seed=seed)
        assert long["rows"] == 20_000 and short["rows"] == 5_000
        assert short["end"] < long["end"] - 5
        taken.append(seconds_to_take_up(long, short["end"], 1500))
    assert max(taken) <= 4.0
    assert sorted(taken)[len(taken) // 2] <= 2.5


def test_simulated_a_linear_climb_taking_up_freed_quota_as_fast_as_the_cubic_throttles_more(monkeypatch):
    # Why the limiter is a cubic (its docstring): a linear climb (AIMD) steep enough to take up a
    # neighbour's freed quota as fast drives every process above its share between two 429s.
    # Asserted: about as fast (2.6 s against 2.8 s over these seeds), and at least 1.3x the 429s
    # at four processes over 5 seeds (334 against 233).
    def pickup_and_429s() -> tuple[float, int]:
        taken = []
        for seed in range(1, 6):
            long, short = simulate([(20_000, 0.0), (5_000, 0.003)], quota=1500, seed=seed)
            taken.append(seconds_to_take_up(long, short["end"], 1500))
        four = [(15_000, 0.003 * p) for p in range(4)]
        runs = [r for seed in range(1, 6) for r in simulate(four, quota=1500, seed=seed)]
        return max(taken), sum(r["throttled"] for r in runs)

    cubic_pickup, cubic_429s = pickup_and_429s()
    monkeypatch.setitem(globals(), "AdaptiveRateLimiter", LinearClimb)  # simulate() builds from this name
    linear_pickup, linear_429s = pickup_and_429s()
    assert linear_pickup <= cubic_pickup + 0.5, "the linear climb is no longer as fast: retune its slope"
    assert linear_429s >= 1.3 * cubic_429s, "the cubic no longer throttles clearly less than a linear climb"
