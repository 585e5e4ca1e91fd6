"""The few statistics the dashboard and the report need, in plain Python.

Click-through of a message variant is a binomial proportion (help clicks out of
warning pages shown). Its 95 % interval is Wilson's score interval, which stays
inside [0, 1] and behaves at small counts where the textbook Wald interval does
not. Variants are compared with Pearson's chi-square test of homogeneity (all
variants at once) and two-sided two-proportion z-tests against a reference
variant, with Holm's correction for the several comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z_95 = 1.959963984540054


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for ``successes / trials``; (0, 1) without trials."""
    if trials <= 0:
        return (0.0, 1.0)
    successes = min(max(successes, 0), trials)
    p = successes / trials
    z2 = z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return (max(0.0, centre - half), min(1.0, centre + half))


def normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


def two_proportion_z_test(
    successes_a: int, trials_a: int, successes_b: int, trials_b: int
) -> tuple[float, float]:
    """Pooled two-proportion z-test; returns (z, two-sided p)."""
    if trials_a <= 0 or trials_b <= 0:
        return (0.0, 1.0)
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    variance = pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b)
    if variance <= 0:
        return (0.0, 1.0)
    z = (successes_a / trials_a - successes_b / trials_b) / math.sqrt(variance)
    return (z, normal_two_sided_p(z))


def chi_square_sf(statistic: float, df: int) -> float:
    """P(X >= statistic) for X ~ chi-square with ``df`` (a positive integer)."""
    if df < 1:
        raise ValueError("df must be at least 1")
    if statistic <= 0:
        return 1.0
    half = statistic / 2
    if df % 2 == 0:
        # Poisson tail: sum_{i < df/2} e^-h h^i / i!
        term = math.exp(-half)
        total = term
        for i in range(1, df // 2):
            term *= half / i
            total += term
        return min(1.0, total)
    total = math.erfc(math.sqrt(half))
    for i in range(1, (df + 1) // 2):
        total += math.exp((i - 0.5) * math.log(half) - half - math.lgamma(i + 0.5))
    return min(1.0, total)


@dataclass(frozen=True)
class ChiSquare:
    statistic: float
    df: int
    p_value: float


def chi_square_homogeneity(rows: Sequence[tuple[int, int]]) -> ChiSquare | None:
    """Pearson's chi-square test that every row (successes, trials) has the same
    proportion. None when it cannot be computed (fewer than two rows with trials,
    or no successes or no failures at all)."""
    rows = [(s, n) for s, n in rows if n > 0]
    if len(rows) < 2:
        return None
    total_s = sum(s for s, _ in rows)
    total_n = sum(n for _, n in rows)
    if total_s <= 0 or total_s >= total_n:
        return None
    statistic = 0.0
    for s, n in rows:
        for observed, share in ((s, total_s / total_n), (n - s, 1 - total_s / total_n)):
            expected = n * share
            statistic += (observed - expected) ** 2 / expected
    df = len(rows) - 1
    return ChiSquare(statistic, df, chi_square_sf(statistic, df))


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted
