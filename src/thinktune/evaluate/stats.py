"""Uncertainty for benchmark accuracies and for base-vs-tuned comparisons, in plain Python.

Benchmarks here have a few hundred to a few thousand questions, so an accuracy gap of a point or
two is often noise. Two numbers say how much: the Wilson interval around one accuracy, and an
exact McNemar test for two models scored on the same questions (it uses only the questions on
which they disagree, which is what makes it far more sensitive than comparing two intervals).
"""

from __future__ import annotations

import math
from fractions import Fraction

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal: a two-sided 95% interval


def wilson_interval(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a proportion (95% by default).

    Chosen over the textbook "p ± z·sqrt(p(1-p)/n)" because that one collapses to a zero-width
    interval at 0/n and n/n and undercovers on small benchmarks; Wilson stays inside [0, 1] and
    is honest at the edges. No questions at all gives the uninformative (0, 1).
    """
    if total < 0 or correct < 0 or correct > total:
        raise ValueError(f"need 0 <= correct <= total, got correct={correct}, total={total}")
    if total == 0:
        return 0.0, 1.0
    p = correct / total
    z2 = z * z
    denom = 1 + z2 / total
    centre = (p + z2 / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / denom
    low = 0.0 if correct == 0 else max(0.0, centre - half)
    high = 1.0 if correct == total else min(1.0, centre + half)
    return low, high


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant pairs.

    ``b``: questions the base model got right and the tuned model wrong; ``c``: the reverse.
    Under "no difference" each discordant question is a fair coin, so this is a binomial test of
    min(b, c) against Bin(b + c, 1/2), doubled and capped at 1. Computed with exact integers
    (math.comb) so large counts do not lose the tail to floating-point underflow.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def paired_counts(base_correct: list[bool], tuned_correct: list[bool]) -> dict:
    """Count the four outcomes of two models on the same questions, in the same order.

    ``base_only`` and ``tuned_only`` are McNemar's b and c. Lists of different lengths mean the
    runs did not cover the same questions, and comparing them would be meaningless, so that raises.
    """
    if len(base_correct) != len(tuned_correct):
        raise ValueError(f"paired results must cover the same questions: {len(base_correct)} base vs {len(tuned_correct)} tuned")
    counts = {"both_right": 0, "base_only": 0, "tuned_only": 0, "both_wrong": 0}
    for base, tuned in zip(base_correct, tuned_correct):
        if base and tuned:
            counts["both_right"] += 1
        elif base:
            counts["base_only"] += 1
        elif tuned:
            counts["tuned_only"] += 1
        else:
            counts["both_wrong"] += 1
    return counts
