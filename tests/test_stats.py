"""Statistics for comparing message variants, checked against published values."""

from __future__ import annotations

import math

import pytest

from deterrence.stats import (
    chi_square_homogeneity,
    chi_square_sf,
    holm_adjust,
    two_proportion_z_test,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("statistic", "df", "p"),
    [  # critical values from any chi-square table
        (3.841459, 1, 0.05),
        (6.634897, 1, 0.01),
        (5.991465, 2, 0.05),
        (7.814728, 3, 0.05),
        (9.487729, 4, 0.05),
        (11.070498, 5, 0.05),
        (23.209251, 10, 0.01),
    ],
)
def test_chi_square_survival_function(statistic: float, df: int, p: float) -> None:
    assert chi_square_sf(statistic, df) == pytest.approx(p, rel=1e-5)


def test_chi_square_edges() -> None:
    assert chi_square_sf(0, 3) == 1.0
    with pytest.raises(ValueError):
        chi_square_sf(1.0, 0)


def test_wilson_interval() -> None:
    # Newcombe (1998), example: 81 of 263 -> 0.2553 to 0.3662
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    # Stays inside [0, 1] where the Wald interval would not.
    assert wilson_interval(0, 10)[0] == 0.0
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_two_proportion_z_test_agrees_with_chi_square_for_two_groups() -> None:
    z, p = two_proportion_z_test(87, 1000, 157, 1000)
    assert z < 0
    test = chi_square_homogeneity([(87, 1000), (157, 1000)])
    assert test is not None and test.df == 1
    assert test.statistic == pytest.approx(z * z)
    assert test.p_value == pytest.approx(p)
    assert p == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))


def test_chi_square_needs_two_groups_and_both_outcomes() -> None:
    assert chi_square_homogeneity([(5, 50)]) is None
    assert chi_square_homogeneity([(0, 50), (0, 60)]) is None
    assert chi_square_homogeneity([(50, 50), (60, 60)]) is None
    same = chi_square_homogeneity([(10, 100), (20, 200), (30, 300)])
    assert same is not None and same.p_value == pytest.approx(1.0)


def test_holm_adjustment() -> None:
    assert holm_adjust([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm_adjust([0.5]) == [0.5]
    assert holm_adjust([0.9, 0.8]) == [1.0, 1.0]
    assert holm_adjust([0.2, 0.01]) == pytest.approx([0.2, 0.02])
