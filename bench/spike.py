"""bench.soak's reload spike tests: does latency rise past the p99 target after
the lists reload?

A cycle runs from one rewrite of the list file to the next (the time before the
first rewrite is a cycle with no reload in it). Each test compares the
``window`` seconds after each rewrite ("inside") with the rest ("outside"), and
gets its uncertainty by resampling whole cycles (a block bootstrap): latencies
within a cycle are not independent — one stall of a shared machine slows
several requests in a row — and the binomial test this replaces, which treated
them as independent, failed a placebo (a CPU hog every 5 s, no reload) about
as often as it failed real reloads.

The target is DESIGN §7's p99 for a match, 250 µs, the latency deterrence
may add to the slowest hundredth of searches:

- requests (the probe): the p99 inside minus the p99 outside, the latency a
  reload adds to the slowest hundredth of requests, must stay within it;
- matches (the servers' ``deterrence_match_duration_seconds``): the p99
  inside must stay within it, i.e. at most 1 % of matches over 250 µs.

A verdict is "no spike" when the 95 % interval lies within the bound, "SPIKE"
when it lies past it, and "inconclusive" when it straddles it (a longer run
narrows the interval). A match verdict is "—" when the matches miss the target
outside the windows too: then the machine, not the reloads, is what is measured.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

P99_TARGET = 250e-6
"""DESIGN §7's p99 for a match (s)."""

ROUNDS = 2000

T = TypeVar("T")

Buckets = list[tuple[float, float]]
"""A histogram's cumulative buckets: (upper bound, count)."""


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[index]


def since_rewrite(at: float, rewrites: Sequence[float]) -> tuple[int, float]:
    """The cycle ``at`` falls in (0 before the first rewrite, k after the k-th;
    ``rewrites`` in time order) and the seconds since its rewrite (inf in cycle 0)."""
    cycle = bisect.bisect_right(rewrites, at)
    return cycle, at - rewrites[cycle - 1] if cycle else math.inf


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def verdict(self, bound: float) -> str:
        if math.isnan(self.estimate):
            return "—"
        if self.high <= bound:
            return "no spike"
        if self.low > bound:
            return "SPIKE"
        return "inconclusive"


def bootstrap(
    cycles: Sequence[T], statistic: Callable[[Sequence[T]], float], seed: int = 1
) -> Interval:
    """``statistic`` over all cycles, with the 2.5th and 97.5th percentiles of
    it over ROUNDS resamples of whole cycles."""
    rng = random.Random(seed)
    values = [statistic(rng.choices(cycles, k=len(cycles))) for _ in range(ROUNDS)]
    values = sorted(v for v in values if not math.isnan(v))
    if not values:
        return Interval(float("nan"), float("nan"), float("nan"))
    return Interval(
        statistic(cycles),
        values[int(0.025 * len(values))],
        values[min(len(values) - 1, int(0.975 * len(values)))],
    )


# --- requests -------------------------------------------------------------------------------

LatencyCycle = tuple[list[float], list[float]]
"""One cycle's request latencies (s): inside the window, outside it."""


def latency_cycles(
    samples: Sequence[tuple[float, float]], rewrites: Sequence[float], window: float
) -> list[LatencyCycle]:
    """Group (sent at, latency) samples by cycle, inside and outside the window."""
    cycles: list[LatencyCycle] = [([], []) for _ in range(len(rewrites) + 1)]
    for at, seconds in samples:
        cycle, since = since_rewrite(at, rewrites)
        cycles[cycle][0 if since <= window else 1].append(seconds)
    return cycles


def pooled(cycles: Sequence[LatencyCycle], inside: bool) -> list[float]:
    """The latencies inside the windows (or outside them) of all ``cycles``."""
    return [seconds for cycle in cycles for seconds in cycle[0 if inside else 1]]


def by_phase(
    samples: Sequence[tuple[float, float]], rewrites: Sequence[float], ends: Sequence[float]
) -> list[list[float]]:
    """The latencies of requests sent 0-ends[0], ends[0]-ends[1], … seconds after a
    rewrite (``ends`` ascending): where in a reload the slow ones fall."""
    phases: list[list[float]] = [[] for _ in ends]
    for at, seconds in samples:
        _, since = since_rewrite(at, rewrites)
        if since < ends[-1]:
            phases[bisect.bisect_right(ends, since)].append(seconds)
    return phases


def p99_added(cycles: Sequence[LatencyCycle]) -> float:
    """The p99 of requests inside the windows minus the p99 of the others (s)."""
    inside, outside = pooled(cycles, inside=True), pooled(cycles, inside=False)
    if not inside or not outside:
        return float("nan")
    return percentile(inside, 99) - percentile(outside, 99)


def request_spike(cycles: Sequence[LatencyCycle]) -> tuple[Interval, str]:
    interval = bootstrap(cycles, p99_added)
    return interval, interval.verdict(P99_TARGET)


# --- matches ------------------------------------------------------------------------------

MatchCycle = tuple[float, float, float, float]
"""One cycle's matches: (over the target, all) inside the window, then outside."""


def over_target(buckets: Buckets) -> tuple[float, float]:
    """(observations over P99_TARGET, all observations) of cumulative buckets."""
    total = buckets[-1][1] if buckets else 0.0
    within = next((count for bound, count in buckets if bound == P99_TARGET), float("nan"))
    return total - within, total


def match_cycles(
    scrapes: Sequence[tuple[float, Buckets]], rewrites: Sequence[float], window: float
) -> list[MatchCycle]:
    """Group the histogram's growth between scrapes by cycle. An interval counts as
    inside when it overlaps a window, and goes to the cycle it ends in."""
    cycles = [[0.0, 0.0, 0.0, 0.0] for _ in range(len(rewrites) + 1)]
    for (start, before), (end, after) in itertools.pairwise(scrapes):
        over_before, all_before = over_target(before)
        over_after, all_after = over_target(after)
        near = any(start <= at + window and end >= at for at in rewrites)
        cycle = cycles[since_rewrite(end, rewrites)[0]]
        offset = 0 if near else 2
        cycle[offset] += over_after - over_before
        cycle[offset + 1] += all_after - all_before
    return [(a, b, c, d) for a, b, c, d in cycles]


def share_over(cycles: Sequence[MatchCycle], outside: bool = False) -> float:
    offset = 2 if outside else 0
    over = sum(cycle[offset] for cycle in cycles)
    total = sum(cycle[offset + 1] for cycle in cycles)
    return over / total if total else float("nan")


def match_spike(cycles: Sequence[MatchCycle]) -> tuple[Interval, float, str]:
    """The share of matches over the target inside the windows (an interval), the
    share outside, and the verdict."""
    interval = bootstrap(cycles, share_over)
    outside = share_over(cycles, outside=True)
    if math.isnan(outside) or outside > 0.01:
        return interval, outside, "—"
    return interval, outside, interval.verdict(0.01)


def main(argv: list[str] | None = None) -> int:
    """Re-read a run saved by ``python -m bench.soak --save FILE``."""
    import argparse
    import json
    from pathlib import Path

    parser = argparse.ArgumentParser(prog="python -m bench.spike", description=main.__doc__)
    parser.add_argument("saved", type=Path, nargs="+")
    parser.add_argument("--window", type=float, help="seconds after a rewrite (default: saved)")
    args = parser.parse_args(argv)
    for path in args.saved:
        saved = json.loads(path.read_text())
        window = args.window or saved["window"]
        for target in saved["targets"]:
            rewrites = target["rewrites"]
            requests, verdict = request_spike(latency_cycles(target["samples"], rewrites, window))
            scrapes = [(at, [(b, c) for b, c in kept]) for at, kept in target["matcher_scrapes"]]
            matches, outside, match_verdict = match_spike(match_cycles(scrapes, rewrites, window))
            print(
                f"{path.name}: {target['name']}: requests {requests.estimate * 1e3:+.2f} ms"
                f" [{requests.low * 1e3:+.2f}, {requests.high * 1e3:+.2f}] {verdict};"
                f" matches over target {matches.estimate:.2%}"
                f" [{matches.low:.2%}, {matches.high:.2%}] / {outside:.2%} {match_verdict}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
