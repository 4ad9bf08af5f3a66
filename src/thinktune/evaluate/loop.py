"""Loop detection: an output that has written the same passage three times in a row is stopped
(stop reason "loop") instead of running on to `--max-new-tokens` (issue 14).

Why: small distilled R1 models decoded greedily fall into loops, as DeepSeek warns ("set the
temperature within 0.5-0.7 to prevent endless repetitions"); evaluation is greedy by default so
that a score is reproducible. A looping row that runs to the limit costs thousands of decode
steps and ends in the same place, cut off without an answer: measured on the demo run
(`compare --limit 32`, 2048 new tokens), three looping rows kept the base side generating for
eight minutes after the other 29 had ended in under two. Stopping them keeps the text written so
far, which is scored as usual (a loop in the answer that already named an option still counts).

The rule is strict on purpose: the last tokens must repeat one block exactly, `TIMES` times, over
at least `MIN_TOKENS` tokens, so a list, a table or a recurring phrase inside varied text never
matches. `--no-stop-loops` turns it off.
"""

from __future__ import annotations

TIMES = 3  # the same block this many times in a row
MIN_TOKENS = 96  # ... covering at least this many tokens (one token repeated 96 times; a 40-token sentence 3 times)
EVERY = 8  # tokens between checks of one row (a loop is stopped at most this late)


def period(ids: list[int]) -> int | None:
    """The length of the block the end of `ids` repeats (the shortest), or None when it does not
    end in a loop: the last max(TIMES * p, MIN_TOKENS) tokens have period p.

    >>> period([5, 6, 7] * 40), period([1] * 95), period([1] * 96), period([9] + [1, 2] * 48)
    (3, None, 1, 2)
    >>> block = list(range(50))
    >>> period(block * 3), period(block * 2 + block[:49] + [0]), period(list(range(300)))
    (50, None, None)
    """
    n = len(ids)
    if n < MIN_TOKENS:
        return None
    last = ids[-1]
    for p in range(1, n // TIMES + 1):
        if ids[-1 - p] != last:  # a period p needs this; it rules out most p at the cost of one comparison
            continue
        span = max(TIMES * p, MIN_TOKENS)
        if span <= n and ids[n - span + p :] == ids[n - span : n - p]:
            return p
    return None


def looping(ids: list[int]) -> bool:
    """Checked as a row grows: True when the row's end is a loop, looked for every `EVERY` tokens."""
    return len(ids) % EVERY == 0 and period(ids) is not None
