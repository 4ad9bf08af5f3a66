"""Wilson intervals and exact McNemar, checked against values computed here by other methods."""

import math
from fractions import Fraction

import pytest

from thinktune.evaluate.stats import mcnemar_exact, paired_counts, wilson_interval

Z = 1.959963984540054


def wilson_by_quadratic(k: int, n: int, z: float = Z) -> tuple[float, float]:
    """The interval as the set of p with |k/n - p| <= z*sqrt(p(1-p)/n): the roots of
    (1 + z²/n) p² - (2k/n + z²/n) p + (k/n)² = 0, by the quadratic formula."""
    phat = k / n
    a = 1 + z * z / n
    b = -(2 * phat + z * z / n)
    c = phat * phat
    disc = math.sqrt(b * b - 4 * a * c)
    return (-b - disc) / (2 * a), (-b + disc) / (2 * a)


def binomial_pvalue_by_pascal(b: int, c: int) -> Fraction:
    """Two-sided sign-test p-value from a Pascal's-triangle row built by additions (no comb)."""
    n = b + c
    row = [1]
    for _ in range(n):
        row = [x + y for x, y in zip([0] + row, row + [0])]
    tail = Fraction(sum(row[: min(b, c) + 1]), 2**n)
    return min(Fraction(1), 2 * tail)


def test_wilson_81_of_263_textbook_value():
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    ref = wilson_by_quadratic(81, 263)
    assert low == pytest.approx(ref[0], abs=1e-12) and high == pytest.approx(ref[1], abs=1e-12)


def test_wilson_edges_are_exact():
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert round(high, 4) == 0.2775  # z²/(n+z²) is the Wilson upper bound at 0/n
    assert high == pytest.approx(Z * Z / (10 + Z * Z), abs=1e-12)
    low, high = wilson_interval(10, 10)
    assert high == 1.0
    assert low == pytest.approx(10 / (10 + Z * Z), abs=1e-12)
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("k,n", [(1, 2), (7, 20), (500, 1273), (3000, 4183), (1, 905)])
def test_wilson_matches_quadratic_roots(k, n):
    low, high = wilson_interval(k, n)
    ref_low, ref_high = wilson_by_quadratic(k, n)
    assert low == pytest.approx(ref_low, abs=1e-12)
    assert high == pytest.approx(ref_high, abs=1e-12)
    assert 0.0 <= low < k / n < high <= 1.0


def test_wilson_other_level_and_bad_counts():
    low, high = wilson_interval(81, 263, z=1.0)
    assert (low, high) == pytest.approx(wilson_by_quadratic(81, 263, z=1.0), abs=1e-12)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_mcnemar_known_values():
    # 2 * (C(15,0)+C(15,1)+C(15,2)+C(15,3)) / 2^15 = 2 * 576 / 32768
    assert mcnemar_exact(3, 12) == 0.03515625
    assert mcnemar_exact(12, 3) == 0.03515625
    assert mcnemar_exact(0, 5) == 0.0625
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(40, 40) == 1.0
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 1) == 1.0


@pytest.mark.parametrize("b,c", [(3, 12), (0, 5), (1, 9), (17, 31), (60, 95), (4, 5)])
def test_mcnemar_matches_pascal_triangle(b, c):
    assert mcnemar_exact(b, c) == float(binomial_pvalue_by_pascal(b, c))


def test_mcnemar_large_counts_stay_exact():
    # The one-sided tail of Bin(1074, 1/2) at 0 is 2^-1074, the smallest float: exact integers get it exactly.
    p = mcnemar_exact(0, 1074)
    assert p == float(Fraction(2, 2**1074)) and p > 0.0
    assert 0.0 < mcnemar_exact(2000, 2100) < 1.0


def test_paired_counts():
    base = [True, True, False, False, True, False]
    tuned = [True, False, True, False, True, True]
    assert paired_counts(base, tuned) == {"both_right": 2, "base_only": 1, "tuned_only": 2, "both_wrong": 1}
    assert paired_counts([], []) == {"both_right": 0, "base_only": 0, "tuned_only": 0, "both_wrong": 0}
    with pytest.raises(ValueError, match="same questions"):
        paired_counts([True], [True, False])
