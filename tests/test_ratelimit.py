"""AdaptiveRateLimiter with a fake clock: no sleeps, no timing assertions.

The last tests run a discrete-event simulation of the service's token bucket (the
local server's model: refilled at the quota, holding one second of it; a 429 takes
nothing) with concurrent clients and network latency, on the limiter's own clock.
"""

from __future__ import annotations

import heapq
import itertools
import random

import pytest

from airflow_provider_vikingdb.ratelimit import AdaptiveRateLimiter, limiter_for


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


# ------------------------------------------------------------------ pacing


def test_unpaced_until_throttled(clock):
    lim = limiter(clock)
    assert lim.rate is None and lim.mode == "unpaced"
    for _ in range(1000):
        assert lim.reserve(100) == (clock.now, clock.now)
        lim.on_success(100)
    assert clock.slept == [] and lim.rate is None


def test_a_fixed_cap_spaces_requests_by_their_rows(clock):
    lim = limiter(clock, max_rate=1000)
    slots = [lim.reserve(100)[0] for _ in range(5)]
    assert slots == pytest.approx([clock.now + 0.1 * n for n in range(5)])
    lim.acquire(100)
    assert clock.slept == pytest.approx([0.5])


def test_max_rate_must_be_positive(clock):
    with pytest.raises(ValueError, match="positive"):
        limiter(clock, max_rate=0)


def test_a_slot_booked_before_a_slow_down_is_booked_again(clock):
    lim = limiter(clock)
    accept(lim, clock, 1500, 2)
    lim.on_throttle(lim.reserve(100)[1], 100)
    send_at, ticket = lim.reserve(100)
    assert send_at > clock.now
    clock.now = send_at - 0.01
    lim.on_throttle(lim.reserve(100)[1], 100)  # a new event while we waited for our slot
    assert lim.stale(ticket)
    clock.now += 0.01
    assert lim.acquire(100) > ticket  # acquire books anew rather than using the stale slot


# ------------------------------------------------------------------ learning the quota


def test_first_throttle_paces_at_what_was_accepted_over_the_last_second(clock):
    lim = limiter(clock)
    accept(lim, clock, 1500, 3)
    assert lim.on_throttle(clock.now, 100) is True
    assert lim.mode == "guessed" and lim.events == 1
    assert lim.rate == pytest.approx(1500, rel=0.07)  # 15 or 16 requests of 100 in the window
    # the bucket was just found empty: the next request waits for one request's worth of refill
    send_at, _ = lim.reserve(100)
    assert send_at - clock.now == pytest.approx(100 / lim.quota)


def test_concurrent_echoes_of_one_congestion_count_once(clock):
    lim = limiter(clock)
    accept(lim, clock, 1500, 2)
    tickets = [lim.reserve(100)[1] for _ in range(8)]  # eight requests in flight
    assert lim.on_throttle(tickets[0], 100) is True
    rate = lim.rate
    clock.now += 0.02
    assert [lim.on_throttle(t, 100) for t in tickets[1:]] == [False] * 7
    assert lim.throttles == 8 and lim.events == 1
    assert lim.rate == pytest.approx(rate, rel=0.01)  # not eight slow-downs


def test_the_quota_is_measured_between_two_congestion_events(clock):
    lim = limiter(clock)
    accept(lim, clock, 1500, 2)
    lim.on_throttle(clock.now, 100)
    # while throttled, the service accepts exactly the quota: 1200 rows/s, say
    accept(lim, clock, 1200, 10)
    assert lim.on_throttle(clock.now, 100) is True
    assert lim.mode == "measured"
    assert lim.quota == pytest.approx(1200, rel=0.01)


def test_after_a_measurement_the_rate_starts_at_the_quota_then_probes_ever_faster(clock):
    lim = limiter(clock)
    accept(lim, clock, 1500, 2)
    lim.on_throttle(clock.now, 100)
    accept(lim, clock, 1500, 10)
    lim.on_throttle(clock.now, 100)
    quota, start, probe_time = lim.quota, clock.now, lim.probe_time
    rates = []
    for t in (0, probe_time / 3, probe_time, 2 * probe_time, 4 * probe_time):
        clock.now = start + t
        rates.append(lim.rate / quota)
    assert rates[0] == pytest.approx(1.0)
    assert rates[1] < 1.002  # nearly flat at first
    assert rates[2] == pytest.approx(1 + lim.probe)
    assert rates[3] == pytest.approx(1 + 8 * lim.probe)
    assert rates[4] > 2  # a raised quota is found


def test_a_measurement_that_left_the_bucket_overflowing_is_only_a_floor(clock):
    lim = limiter(clock)
    accept(lim, clock, 1500, 2)
    lim.on_throttle(clock.now, 100)
    accept(lim, clock, 300, 10)  # far below the quota for long: the bucket overflowed
    accept(lim, clock, 3000, 2)
    lim.on_throttle(clock.now, 100)
    assert lim.mode == "floor"
    floor = lim.quota
    clock.now += lim.doubling
    assert lim.rate == pytest.approx(2 * floor)  # grows exponentially from the floor


def test_a_lowered_quota_is_measured_from_a_recent_event(clock):
    lim = limiter(clock)
    accept(lim, clock, 1500, 2)
    lim.on_throttle(clock.now, 100)
    accept(lim, clock, 1500, 20)
    lim.on_throttle(clock.now, 100)
    accept(lim, clock, 600, 10)  # a neighbour arrived: we now get 600 rows/s
    lim.on_throttle(clock.now, 100)
    assert lim.quota == pytest.approx(600, rel=0.02)


def test_a_throttle_with_nothing_accepted_starts_low_and_doubles(clock):
    lim = limiter(clock)
    lim.on_throttle(clock.now, 100)
    assert lim.mode == "floor" and lim.rate == pytest.approx(100)
    clock.now += 2 * lim.doubling
    assert lim.rate == pytest.approx(400)


def test_the_cap_bounds_the_learned_rate(clock):
    lim = limiter(clock, max_rate=500)
    accept(lim, clock, 500, 2)
    lim.on_throttle(clock.now, 100)
    clock.now += 1000
    assert lim.rate == 500


def test_one_limiter_per_collection_and_cap():
    a = limiter_for("http://h:1", "coll", None)
    assert limiter_for("http://h:1", "coll", None) is a
    assert limiter_for("http://h:1", "other", None) is not a
    assert limiter_for("http://h:1", "coll", 100.0) is not a


# ------------------------------------------------------------------ simulated runs


def simulate(
    *,
    quota: float | None,
    ids: int,
    concurrency: int = 8,
    latency: float = 0.030,
    quota_changes: tuple[tuple[float, float], ...] = (),
    seed: int = 1,
) -> dict:
    """Workers deleting ``ids`` in batches of 100 through one limiter against a token bucket.

    Like the hook: a worker books a slot, sends, and on a 429 books again (no other backoff).
    Latency varies by up to 30 %; the bucket holds one second of quota and starts full.
    """
    rng = random.Random(seed)
    clock = FakeClock(0.0)
    lim = AdaptiveRateLimiter(clock=clock, sleep=clock.sleep)
    tokens, updated, rate = quota or 0.0, 0.0, quota
    changes = list(quota_changes)
    events: list = []
    order = itertools.count()
    batches = iter(range(ids // 100))
    stats = {"attempts": 0, "throttled": 0, "rows": 0, "seconds": 0.0, "max_rate": 0.0}

    def at(time: float, *event) -> None:
        heapq.heappush(events, (time, next(order), event))

    for worker in range(concurrency):
        at(0.004 * worker, "next", None)
    while events:
        clock.now, _, (kind, arg) = heapq.heappop(events)
        while changes and changes[0][0] <= clock.now:
            tokens = min(rate, tokens + (clock.now - updated) * rate)
            updated, rate = clock.now, changes.pop(0)[1]
        if kind == "next":
            batch = next(batches, None)
            if batch is not None:
                at(clock.now, "book", None)
        elif kind == "book":
            send_at, ticket = lim.reserve(100)
            at(max(send_at, clock.now), "send", ticket)
        elif kind == "send":
            if lim.stale(arg) and clock.now > arg:
                at(clock.now, "book", None)
            else:
                stats["max_rate"] = max(stats["max_rate"], lim.rate or 0.0)
                at(clock.now + latency * (1 + 0.3 * rng.random()), "arrive", arg)
        elif kind == "arrive":
            accepted = True
            if rate is not None:
                tokens = min(rate, tokens + (clock.now - updated) * rate)
                updated = clock.now
                accepted = tokens >= 100
                tokens -= 100 if accepted else 0
            at(clock.now + 0.001, "answer", (arg, accepted))
        elif kind == "answer":
            ticket, accepted = arg
            stats["attempts"] += 1
            if accepted:
                lim.on_success(100)
                stats["rows"] += 100
                stats["seconds"] = clock.now
                at(clock.now, "next", None)
            else:
                stats["throttled"] += 1
                lim.on_throttle(ticket, 100)
                at(clock.now, "book", None)
    stats["limiter"] = lim
    return stats


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_simulated_quota_run_keeps_up_with_the_quota(seed):
    # 60 000 ids at 1500 rows/s with a 1500-row burst: the quota allows (60000 - 1500) / 1500 = 39 s.
    run = simulate(quota=1500, ids=60_000, seed=seed)
    assert run["rows"] == 60_000
    assert 39.0 / run["seconds"] >= 0.97
    assert run["throttled"] / run["attempts"] <= 0.02
    assert run["limiter"].quota == pytest.approx(1500, rel=0.03)


def test_simulated_raised_quota_is_reached():
    run = simulate(quota=15_000, ids=600_000, concurrency=32)
    assert run["rows"] == 600_000
    assert (600_000 - 15_000) / 15_000 / run["seconds"] >= 0.97
    assert run["throttled"] / run["attempts"] <= 0.02


def test_simulated_no_quota_is_never_paced():
    run = simulate(quota=None, ids=60_000)
    assert run["throttled"] == 0 and run["max_rate"] == 0.0
    assert run["limiter"].rate is None
    # eight requests in flight all the time: 600 batches of ~35 ms, eight at a time
    assert run["seconds"] < 600 / 8 * 0.040


def test_simulated_quota_lowered_mid_run_is_followed():
    run = simulate(quota=1500, ids=40_000, quota_changes=((10.0, 750.0),))
    assert run["rows"] == 40_000  # nothing lost
    assert run["limiter"].quota == pytest.approx(750, rel=0.1)


def test_simulated_quota_raised_mid_run_is_found():
    run = simulate(quota=1500, ids=200_000, quota_changes=((10.0, 3000.0),))
    assert run["rows"] == 200_000
    assert run["limiter"].quota > 2000
