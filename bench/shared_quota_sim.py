"""Rules for probing less in a crowd, tried in the test suite's simulation of the shared quota.

    .venv/bin/python bench/shared_quota_sim.py              # 20 seeds per case
    .venv/bin/python bench/shared_quota_sim.py --seeds 5
    .venv/bin/python bench/shared_quota_sim.py --burst 0.2  # a bucket of 0.2 s of quota

Makes the table in docs/performance.md ("Probing less in a crowd"). The cases are
bench/shared_quota.py's (2 x 30 000, 4 x 15 000, staggered 20 000 + 5 000 at 1500 rows/s),
run in ``tests/test_ratelimit.py``'s discrete-event model (one token bucket holding a
second of quota, 8 workers a process, 30 ms latency) instead of on the local server: the
model's figures for the limiter as shipped are within a few tenths of a point of the
bench's, and a run takes milliseconds, so 20 seeds compare rules better than 5 real runs.

The first rows are the shipped limiter, the same without its pause after a 429 (as it was
before), with a pause that is the same for every share, and with AIMD's linear climb in place
of the cubic (at a slope that takes up freed quota as fast, and at a quarter of it: why the
limiter is a cubic). Each rule after them is the
shipped limiter with one thing changed after a 429 (the start, the first share, echoes, the
pause and the alone mode are as shipped). None is a candidate: each lowers the 429s and, with
them, the lowest share, the combined throughput or the pickup. Two of them are told the number
of processes, which a process cannot measure: the cubic slowed by it (still on that trade-off),
and the fixed cap at the quota / N that docs/performance.md suggests when the user knows N (no
429s, and no pickup). The last lines are the late joiner, and a crowd of 16, 24 and 32 processes
before and with the once-a-second cut (docs/performance.md, "A crowd").
"""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import test_ratelimit as model  # noqa: E402  (the suite's simulation: simulate, fair_shares, ...)
from shared_quota import held  # noqa: E402  (the bench's: simulated runs have its "end" and "accepted")

from airflow_provider_vikingdb.ratelimit import AdaptiveRateLimiter  # noqa: E402

QUOTA = 1500.0
CASES = {
    "2x": [(30000, 0.0), (30000, 0.003)],
    "4x": [(15000, 0.003 * p) for p in range(4)],
    "staggered": [(20000, 0.0), (5000, 0.003)],
}


class LinearClimb(model.LinearClimb):
    """AIMD instead of the cubic: from ``beta`` x the reference, a linear climb of 400 rows/s a
    second, the same for every share (the pause, the start and the alone mode as shipped). The
    survivor of the staggered pair takes up the freed quota as fast as with the cubic, but that
    slope also drives every process above its share between two 429s."""


class LinearClimbSlow(LinearClimb):
    """The same at a quarter of the slope: as few 429s as the cubic, and slow to take up quota."""

    slope = 100.0


class HeldAtTheReference(AdaptiveRateLimiter):
    """The cubic, but held flat at the reference for ``hold`` x (1500 / share - 1) seconds before
    probing above it: a process that takes itself for one of N probes about N times less often."""

    hold = 0.5

    def _plateau(self, ref: float) -> float:
        """Seconds held flat at the reference ``ref`` before the cubic goes on above it."""
        return min(6.0, self.hold * max(0.0, self.initial / ref - 1.0))

    def _rate(self, now: float) -> float:
        ref = self._ref
        if ref is None or self._alone:
            return super()._rate(now)
        x = now - self._since - self._k
        plateau = self._plateau(ref)
        x = x - plateau if x > plateau else min(x, 0.0)
        rate = min(ref + self.scale * x**3, max(self.headroom * self._sent_rate(now), ref))
        return rate if self.max_rate is None else min(rate, self.max_rate)


class SlowerForSmallShares(AdaptiveRateLimiter):
    """From ``beta`` x the reference, a linear climb at ``slope`` x ref x sqrt(ref / 1500) rows/s
    a second (a share N times smaller climbs N^1.5 times slower: the group probes about as much
    whatever N), x4 a second once 10 % above the reference (freed quota); the reference is the
    rate at the 429 capped at 1.1 x the measured share."""

    slope = 0.1

    def _rate(self, now: float) -> float:
        ref = self._ref
        if ref is None or self._alone:
            return super()._rate(now)
        growth = self.slope * ref * (ref / max(self.initial, ref)) ** 0.5
        elapsed = now - self._since
        rate = ref * self.beta + growth * elapsed
        top = 1.1 * ref
        if rate > top:
            rate = top * self.start_growth ** (elapsed - (top - ref * self.beta) / growth)
        rate = min(rate, max(self.headroom * self._sent_rate(now), ref))
        return rate if self.max_rate is None else min(rate, self.max_rate)

    def _reference(self, now: float, rows: int) -> tuple[float, bool]:
        ref, alone = super()._reference(now, rows)
        got, span = self._accepted - self._accepted_then, now - self._since
        if self._ref is not None and not alone and span > 0 and got >= self.min_requests * rows:
            ref = min(self._rate(now), 1.1 * got / span)
        return ref, alone


class SlowerForSmallSharesHalf(SlowerForSmallShares):
    """The same at half the slope."""

    slope = 0.05


class HeldTheSameForEveryShare(HeldAtTheReference):
    """The cubic, held flat at the reference for ``hold`` seconds whatever the share: every
    process probes equally often, so the room a cut leaves goes to each in turn (fair in a model
    where the prober always pays), and the group's 429s fall as the hold grows."""

    hold = 1.5

    def _plateau(self, ref: float) -> float:
        return self.hold


class HeldByTheFirstShare(HeldAtTheReference):
    """The cubic, held flat at the reference for ``hold`` x (1500 / first share - 2) x U(0, 2)
    seconds: the first share is about the same for processes started together, so they all hold
    about as long (no hold at all for two), and the random factor, drawn at each 429, keeps one
    from always probing first (and paying first). Still, a process hit while holding (by another's
    probe) is cut to a smaller measured share, and nothing gives it back: shares drift apart."""

    hold = 1.0
    _seeds = itertools.count(1)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._first: float | None = None
        self._draw = 1.0
        self._random = random.Random(next(self._seeds))

    def on_throttle(self, ticket: float, rows: int = 0) -> bool:
        new = super().on_throttle(ticket, rows)
        if new:
            self._first = self._first or self._ref
            self._draw = 2 * self._random.random()
        return new

    def _plateau(self, ref: float) -> float:
        return self._draw * self.hold * max(0.0, self.initial / (self._first or ref) - 2.0)


class NotPaused(AdaptiveRateLimiter):
    """The limiter before the pause: after a 429, the next request waits only for one request's
    worth of refill."""

    pause = 0.0


class PausedTheSameForEveryShare(AdaptiveRateLimiter):
    """After each congestion event (not alone) nothing is sent for ``fixed`` seconds whatever the
    share: the survivor of the staggered pair pauses as long as one of four, and loses throughput
    while it is still finding out that it is alone."""

    fixed = 0.8

    def _pause(self, ref: float) -> float:
        return 0.0 if self._alone else self.fixed


class SlowedByTheirKnownNumber(AdaptiveRateLimiter):
    """The cubic slowed (N / 2)^3 times, N the number of processes, known to every process (told,
    not measured: the same for all, so no process that fell behind gains less than the others):
    two processes as shipped, four eight times slower. Even so, a slower climb is slower to win
    back what an unlucky 429 took, and the lowest share and the combined throughput fall."""

    writers = 1

    @classmethod
    def for_case(cls, writers: int) -> type[AdaptiveRateLimiter]:
        return type(cls.__name__, (cls,), {"writers": writers})

    def _slowed(self) -> float:
        return float(self.scale / max(1.0, self.writers / 2) ** 3)

    def _rate(self, now: float) -> float:
        ref = self._ref
        if ref is None or self._alone:
            return super()._rate(now)
        rate = ref + self._slowed() * (now - self._since - self._k) ** 3
        rate = min(rate, max(self.headroom * self._sent_rate(now), ref))
        return rate if self.max_rate is None else min(rate, self.max_rate)

    def on_throttle(self, ticket: float, rows: int = 0) -> bool:
        new = super().on_throttle(ticket, rows)
        if new and not self._alone and self._ref is not None:
            self._k = (self._ref * (1.0 - self.beta) / self._slowed()) ** (1 / 3)
        return new


class CappedAtTheFairShare(AdaptiveRateLimiter):
    """Not a rule after a 429: ``rows_per_second`` set to the quota / N, N known to the user (mapped
    tasks). Nothing probes above the fair share, so nothing is throttled, and nothing takes up
    quota another process frees (the staggered pair's survivor stays at half the quota)."""

    #: score() runs it with simulate(max_rate=the quota / N), as a user sets rows_per_second
    fair_cap = True


RULES = [
    AdaptiveRateLimiter,
    NotPaused,
    PausedTheSameForEveryShare,
    LinearClimb,
    LinearClimbSlow,
    HeldAtTheReference,
    SlowerForSmallShares,
    SlowerForSmallSharesHalf,
    HeldTheSameForEveryShare,
    HeldByTheFirstShare,
    SlowedByTheirKnownNumber,
    CappedAtTheFairShare,
]


def score(rule: type[AdaptiveRateLimiter], case: str, seed: int, burst: float = 1.0) -> dict[str, float]:
    if hasattr(rule, "for_case"):  # a rule that is told the number of processes
        rule = rule.for_case(len(CASES[case]))
    model.AdaptiveRateLimiter = rule  # simulate() builds each process's limiter from this name
    cap = QUOTA / len(CASES[case]) if getattr(rule, "fair_cap", False) else None
    runs = model.simulate(CASES[case], quota=QUOTA, seed=seed, burst=burst, max_rate=cap)
    lost = sum(r["ids"] - r["rows"] for r in runs)
    assert lost == 0, f"{rule.__name__} lost {lost} ids in {case}, seed {seed}"
    out = {
        "throttled": model.throttled(runs),
        "lowest share": min(model.fair_shares(runs, QUOTA)),
        "combined": model.combined(runs, QUOTA, burst),
    }
    if case == "staggered":
        long, short = runs
        out["pickup"] = model.seconds_to_take_up(long, short["end"], QUOTA)
        out["held"] = held(runs, QUOTA) or 0.0
    return out


def late_joiner(seeds: range, burst: float = 1.0) -> str:
    """One process of 60 000 ids, a second of 15 000 starting 10 s later: how long the second takes
    to get 80 % of its fair 750 rows/s (over 2 s), and its share of fair over their overlap."""
    waits, shares = [], []
    for seed in seeds:
        first, late = model.simulate([(60_000, 0.0), (15_000, 10.0)], quota=QUOTA, seed=seed, burst=burst)
        assert late["rows"] == 15_000 and first["rows"] == 60_000
        waits.append(model.seconds_to_reach(late, 10.0, 0.8 * QUOTA / 2, window=2.0))
        shares.append(model.fair_shares([first, late], QUOTA)[1])
    return (
        f"late joiner (this limiter): 80 % of its fair share after {statistics.median(waits):.1f} s median,"
        f" {max(waits):.1f} s worst; {100 * statistics.median(shares):.0f} % of its fair share over the"
        f" overlap, {100 * min(shares):.0f} % worst"
    )


class CutOnlyOnceThrough(AdaptiveRateLimiter):
    """The limiter before the once-a-second cut: no new event until a request got through."""

    refused_for = float("inf")


def crowd(seeds: range, burst: float = 1.0) -> list[str]:
    """16, 24 and 32 processes of about 60 000 ids in all, before and with the once-a-second cut:
    throttled share, the most 429s one batch got (past the hook's 60 it fails), lowest share,
    combined (docs/performance.md, "A crowd")."""
    lines = []
    original = model.AdaptiveRateLimiter
    try:
        for count in (16, 24, 32):
            procs = [(100 * (600 // count), 0.003 * p) for p in range(count)]
            for rule in (CutOnlyOnceThrough, AdaptiveRateLimiter):
                model.AdaptiveRateLimiter = rule
                runs = [model.simulate(procs, quota=QUOTA, seed=s, burst=burst) for s in seeds]
                worst = max(map(model.throttled, runs))
                lines.append(
                    f"{count} processes, {rule.__name__:19}: 429s {100 * worst:.1f}%,"
                    f" most on one batch {max(r['most_429s'] for run in runs for r in run)},"
                    f" lowest share {100 * min(min(model.fair_shares(run, QUOTA)) for run in runs):.0f}%,"
                    f" combined {100 * min(model.combined(run, QUOTA, burst) for run in runs):.1f}%"
                )
    finally:
        model.AdaptiveRateLimiter = original
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="seeds per case (default 20)")
    parser.add_argument(
        "--burst",
        type=float,
        default=1.0,
        help="seconds of quota the bucket holds (default 1, the local server's)",
    )
    args = parser.parse_args()
    seeds, burst = range(1, args.seeds + 1), args.burst
    print(f"worst of {len(seeds)} seeds, a bucket of {burst:g} s; 429s = throttled share of requests")
    header = (
        "rule                       2x 429s  4x 429s  4x lowest share  4x combined  pickup  stag. combined"
    )
    print(header + "\n" + "-" * len(header))
    original = model.AdaptiveRateLimiter
    try:
        for rule in RULES:
            got = {case: [score(rule, case, s, burst) for s in seeds] for case in CASES}
            two, four, stag = got["2x"], got["4x"], got["staggered"]
            print(
                f"{rule.__name__:26} {100 * max(r['throttled'] for r in two):6.1f}%"
                f" {100 * max(r['throttled'] for r in four):7.1f}%"
                f" {100 * min(r['lowest share'] for r in four):15.0f}%"
                f" {100 * min(r['combined'] for r in four):11.1f}%"
                f" {max(r['pickup'] for r in stag):6.2f} s"
                f" {100 * min(r['combined'] for r in stag):14.1f}%"
                f"   (median 4x 429s {100 * statistics.median(r['throttled'] for r in four):.1f}%)"
            )
    finally:
        model.AdaptiveRateLimiter = original
    print("\n" + late_joiner(seeds, burst))
    print("\na crowd (worst of the seeds; CutOnlyOnceThrough is the limiter before the once-a-second cut):")
    print("\n".join(crowd(seeds, burst)))


if __name__ == "__main__":
    main()
