"""bench.spike's verdicts on made-up soaks: a reload that slows requests past the
target is caught, one that does not is cleared, and stalls of the machine that
fall anywhere in the cycle are not blamed on reloads."""

from __future__ import annotations

import random

from bench.spike import (
    P99_TARGET,
    latency_cycles,
    match_cycles,
    match_spike,
    percentile,
    request_spike,
)

PERIOD, WINDOW, CYCLES = 5.0, 2.0, 30


def soak(
    added: float, seed: int = 3, stalls: float = 0.0
) -> tuple[list[tuple[float, float]], list[float]]:
    """50 requests a second for CYCLES reload cycles. Latencies are a server's:
    mostly ~1 ms with a long tail; in the first half second after each rewrite,
    ``added`` seconds more. ``stalls``: the chance that a request sits behind a
    stall of the machine, wherever it falls, which then also slows the next few."""
    rng = random.Random(seed)
    rewrites = [PERIOD * (k + 1) for k in range(CYCLES)]
    samples: list[tuple[float, float]] = []
    at, stalled = 0.0, 0
    while at < PERIOD * (CYCLES + 1):
        latency = rng.lognormvariate(-7, 0.5)
        if stalled or rng.random() < stalls:
            stalled = stalled - 1 if stalled else 4
            latency += 0.004
        if any(0 <= at - rewrite <= 0.5 for rewrite in rewrites):
            latency += added
        samples.append((at, latency))
        at += rng.expovariate(50)
    return samples, rewrites


def test_a_reload_that_adds_more_than_the_target_is_a_spike() -> None:
    samples, rewrites = soak(added=0.003)
    interval, verdict = request_spike(latency_cycles(samples, rewrites, WINDOW))
    assert verdict == "SPIKE"
    assert interval.low > P99_TARGET


def test_a_reload_that_changes_nothing_is_cleared() -> None:
    samples, rewrites = soak(added=0.0)
    interval, verdict = request_spike(latency_cycles(samples, rewrites, WINDOW))
    assert verdict == "no spike", interval
    assert interval.low < 0 < interval.high


def test_stalls_of_the_machine_are_not_blamed_on_reloads() -> None:
    # Clustered stalls anywhere in the cycle: a test that took requests for
    # independent draws would see a spike in some seeds; this one must not.
    verdicts = set()
    for seed in range(5):
        samples, rewrites = soak(added=0.0, seed=seed, stalls=0.003)
        verdicts.add(request_spike(latency_cycles(samples, rewrites, WINDOW))[1])
    assert "SPIKE" not in verdicts, verdicts


def test_the_p99_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 201)]
    assert percentile(values, 99) == 198.0
    assert percentile(values, 50) == 100.0


def scrapes(
    over_inside: float, over_outside: float
) -> tuple[list[tuple[float, list[tuple[float, float]]]], list[float]]:
    """Histogram scrapes every half second, 400 matches each, a share of them over
    the target: ``over_inside`` within WINDOW after a rewrite, else ``over_outside``."""
    rewrites = [PERIOD * (k + 1) for k in range(CYCLES)]
    taken: list[tuple[float, list[tuple[float, float]]]] = []
    within = total = 0.0
    at = 0.0
    while at < PERIOD * (CYCLES + 1):
        near = any(at - 0.5 <= rewrite + WINDOW and at >= rewrite for rewrite in rewrites)
        total += 400
        within += 400 * (1 - (over_inside if near else over_outside))
        taken.append((at, [(100e-6, within / 2), (P99_TARGET, within), (1.0, total)]))
        at += 0.5
    return taken, rewrites


def test_matches_over_the_target_after_reloads_are_a_spike() -> None:
    taken, rewrites = scrapes(over_inside=0.03, over_outside=0.004)
    interval, outside, verdict = match_spike(match_cycles(taken, rewrites, WINDOW))
    assert verdict == "SPIKE"
    assert interval.estimate > 0.02 and outside < 0.01


def test_matches_within_the_target_after_reloads_are_cleared() -> None:
    taken, rewrites = scrapes(over_inside=0.005, over_outside=0.004)
    assert match_spike(match_cycles(taken, rewrites, WINDOW))[2] == "no spike"


def test_a_machine_over_the_target_at_all_times_gets_no_verdict() -> None:
    taken, rewrites = scrapes(over_inside=0.02, over_outside=0.02)
    assert match_spike(match_cycles(taken, rewrites, WINDOW))[2] == "—"
