"""A random search of the shared-quota limiter's knobs against issue 13's targets, in the simulation.

    .venv/bin/python bench/shared_quota_search.py                 # 1000 rules, ~7 min
    .venv/bin/python bench/shared_quota_search.py --samples 3000 --draw-seed 2
    .venv/bin/python bench/shared_quota_search.py --check beta=0.85,scale=28 --first-seed 11 --seeds 20

bench/shared_quota_sim.py compares rules picked by hand. This draws rules at random from a
family of nine knobs that holds the shipped limiter and some of those rules (the pauses, the holds),
runs each in the test
suite's simulation (one token bucket holding a second of quota, as on the local server; the cases
of bench/shared_quota.py) over ``--seeds`` seeds, and reports, for each target, the best any rule
reached while meeting all the other targets. A target that nothing reaches with the others held
is where the trade-off is, not a matter of tuning. ``--check`` scores one rule (the knobs as
printed) instead, for instance on other seeds (``--first-seed``): a rule picked as the best of
many on some seeds is partly picked for their luck.

The knobs (every rule keeps the shipped start, first share, echoes and alone mode):

- ``beta``, ``scale``: the cut after a 429 and the cubic's scale near the reference;
- ``pause`` and ``pause_power``: nothing is sent for ``pause`` x (1 - share / 1500) ** power s;
- ``delta``, ``hold``, ``hold_per_share``, ``scale_after``: above the reference, the rate is
  held at most ``delta`` rows/s over it for ``hold`` + ``hold_per_share`` x (1500 / share - 1)
  seconds from when the cubic is back at the reference, then climbs on a cubic of
  ``scale_after`` (to take up freed quota); drawn for 70 % of the rules, the others have none;
- ``collateral``: a 429 that comes while the process is not above its reference is taken for
  another process's probe: no cut; the next 429 after one taken so is handled as usual.

Besides the issue's targets, the survivor of the staggered pair must get 85 % of the quota over
the 4 s after the other stops: the pickup figure (a one-second window reaching 90 %) alone is also
met by a process that spends a banked burst and then stays at its share.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys

from shared_quota_sim import AdaptiveRateLimiter, model, score

#: issue 13's targets (worst of the seeds), and the sustained pickup: (bound, at least?)
TARGETS = {
    "2x 429s": (0.05, False),
    "4x 429s": (0.05, False),
    "2x lowest share": (0.60, True),
    "4x lowest share": (0.60, True),
    "2x combined": (0.92, True),
    "4x combined": (0.92, True),
    "pickup s": (3.0, False),
    "survivor's next 4 s": (0.85, True),
}


class Tunable(AdaptiveRateLimiter):
    """The shipped limiter with the knobs of the module docstring; the defaults are the shipped
    limiter's (no hold above the reference, no collateral)."""

    pause_power = 1.0
    delta = math.inf
    hold = 0.0
    hold_per_share = 0.0
    scale_after: float | None = None  # None: ``scale``
    collateral = False
    _had_collateral = False

    def _rate(self, now: float) -> float:
        ref = self._ref
        if ref is None or self._alone:
            return super()._rate(now)
        x = now - self._since - self._k
        rate = ref + self.scale * x**3
        if x > 0:
            held = self.hold + self.hold_per_share * max(0.0, self.initial / ref - 1.0)
            over = min(self.delta, self.scale * x**3)
            if x >= held:
                after = self.scale if self.scale_after is None else self.scale_after
                over = max(over, min(self.delta, self.scale * held**3) + after * (x - held) ** 3)
            rate = ref + over
        rate = min(rate, max(self.headroom * self._sent_rate(now), ref))
        return rate if self.max_rate is None else min(rate, self.max_rate)

    def _pause(self, ref: float) -> float:
        return 0.0 if self._alone else self.pause * max(0.0, 1.0 - ref / self.initial) ** self.pause_power

    def _congestion(self, now: float, ticket: float, rows: int) -> bool:
        ref = self._ref
        if (
            self.collateral
            and ref is not None
            and not self._alone
            and ticket > self._since
            and self._through
            and not self._had_collateral
            and self._rate(ticket) <= ref * 1.001
        ):
            self._had_collateral = True
            self._next_slot = max(self._next_slot, now + rows / ref)
            return False
        self._had_collateral = False
        return super()._congestion(now, ticket, rows)


def draw(rng: random.Random) -> dict[str, float | bool]:
    """One rule's knobs, at random."""
    knobs: dict[str, float | bool] = {
        "beta": rng.uniform(0.6, 0.95),
        "scale": math.exp(rng.uniform(math.log(10), math.log(200))),
        "pause": rng.uniform(0.0, 3.0),
        "pause_power": rng.uniform(0.5, 3.0),
        "collateral": rng.random() < 0.5,
    }
    if rng.random() < 0.7:
        knobs |= {
            "delta": rng.uniform(30, 400),
            "hold": rng.uniform(0.0, 3.0),
            "hold_per_share": rng.uniform(0.0, 2.0),
            "scale_after": math.exp(rng.uniform(math.log(20), math.log(2000))),
        }
    return knobs


def evaluate(knobs: dict[str, float | bool], seeds: range) -> dict[str, float]:
    """The targets' figures for one rule, worst over the seeds (and the median 4x 429s)."""
    rule = type("Rule", (Tunable,), dict(knobs))
    original = model.AdaptiveRateLimiter
    try:
        worst: dict[str, list[float]] = {name: [] for name in TARGETS}
        for seed in seeds:
            for case in ("2x", "4x"):
                got = score(rule, case, seed)  # asserts that no id was lost
                worst[f"{case} 429s"].append(got["throttled"])
                worst[f"{case} lowest share"].append(got["lowest share"])
                worst[f"{case} combined"].append(got["combined"])
            got = score(rule, "staggered", seed)
            worst["pickup s"].append(got["pickup"])
            worst["survivor's next 4 s"].append(got["held"])
    finally:
        model.AdaptiveRateLimiter = original  # score() sets it for simulate()
    out = {name: (min(got) if TARGETS[name][1] else max(got)) for name, got in worst.items()}
    out["4x 429s median"] = statistics.median(worst["4x 429s"])
    return out


def missed(figures: dict[str, float]) -> list[str]:
    """The targets a rule misses."""
    return [
        name
        for name, (bound, at_least) in TARGETS.items()
        if (figures[name] < bound if at_least else figures[name] > bound)
    ]


def meets(figures: dict[str, float], skip: str | None = None) -> bool:
    return all(name == skip for name in missed(figures))


def show(figures: dict[str, float]) -> str:
    return ", ".join(
        f"{name} {value:.2f}" if name == "pickup s" else f"{name} {100 * value:.1f} %"
        for name, value in figures.items()
    )


def spell(knobs: dict[str, float | bool]) -> str:
    """The knobs as ``--check`` takes them (in full: the simulation is chaotic enough that a rounded
    knob is another rule)."""
    return ",".join(f"{k}={float(v)!r}" for k, v in knobs.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1000, help="rules drawn (default 1000)")
    parser.add_argument("--draw-seed", type=int, default=1, help="the draws' seed (default 1)")
    parser.add_argument("--seeds", type=int, default=10, help="simulation seeds per rule (default 10)")
    parser.add_argument("--first-seed", type=int, default=1, help="the first simulation seed (default 1)")
    parser.add_argument(
        "--check", metavar="KNOBS", help="score this rule only: name=value,... as the search prints them"
    )
    args = parser.parse_args()
    rng, seeds = random.Random(args.draw_seed), range(args.first_seed, args.first_seed + args.seeds)
    print(f"shipped: {show(evaluate({}, seeds))}")
    if args.check:
        knobs = {k: float(v) for k, v in (kv.split("=", 1) for kv in args.check.split(","))}
        figures = evaluate(knobs, seeds)
        print(f"{args.check}: {show(figures)}\n  misses: {', '.join(missed(figures)) or 'nothing'}")
        return
    tried: list[tuple[dict[str, float | bool], dict[str, float]]] = []
    for n in range(1, args.samples + 1):
        knobs = draw(rng)
        tried.append((knobs, evaluate(knobs, seeds)))
        if n % 100 == 0:
            print(f"... {n} rules", file=sys.stderr, flush=True)
    print(
        f"\n{len(tried)} rules, worst of {len(seeds)} seeds; meeting every target: "
        f"{sum(meets(f) for _, f in tried)}"
    )
    few = [(k, f) for k, f in tried if f["4x 429s"] <= TARGETS["4x 429s"][0]]
    if few:
        knobs, closest = min(few, key=lambda kf: len(missed(kf[1])))
        print(
            f"\n{len(few)} rules throttle at most 5 % at 4 processes; the closest to the others misses"
            f" {', '.join(missed(closest))}"
        )
        print(f"  {show(closest)}")
        print(f"  knobs: {spell(knobs)}")
    for name, (_, at_least) in TARGETS.items():
        held = [(k, f) for k, f in tried if meets(f, skip=name)]
        if not held:
            print(f"\n{name}: no rule meets the other targets")
            continue
        knobs, best = (max if at_least else min)(held, key=lambda kf: kf[1][name])
        print(f"\n{name}: best {show({name: best[name]})} of {len(held)} rules meeting the others")
        print(f"  {show(best)}")
        print(f"  knobs: {spell(knobs)}")


if __name__ == "__main__":
    main()
