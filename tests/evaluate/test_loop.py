"""loop.py: an output is stopped only once its end repeats one block exactly, three times over at
least MIN_TOKENS tokens; varied text with recurring phrases never matches."""

import doctest

from thinktune.evaluate import loop
from thinktune.evaluate.loop import EVERY, MIN_TOKENS, TIMES, looping, period


def test_doctests():
    result = doctest.testmod(loop)
    assert result.attempted >= 2 and result.failed == 0


def test_the_thresholds_are_the_documented_ones():
    assert (TIMES, MIN_TOKENS) == (3, 96)
    block = list(range(1000, 1040))  # a 40-token sentence
    assert period(block * 2) is None  # twice is not a loop
    assert period(block * 2 + block[:39]) is None  # one token short of the third time
    assert period(block * 3) == 40
    assert period([7] + block * 3) == 40  # what came before does not matter
    long = list(range(2000, 2100))
    assert period(long * 3) == 100 and period(long * 3 + long[:5]) == 100  # caught mid-block too


def test_recurring_phrases_in_varied_text_are_not_a_loop():
    phrase = [11, 12, 13, 14]
    text = []
    for i in range(60):  # the same phrase 60 times, each followed by different words
        text += phrase + [500 + i, 600 + i]
    assert period(text) is None
    table = [t for i in range(80) for t in (90, 300 + i, 91)]  # "| value |" rows with different values
    assert period(table) is None


def test_looping_checks_every_few_tokens_only():
    ids = [5] * (MIN_TOKENS + 2 * EVERY)
    assert [looping(ids[:n]) for n in range(MIN_TOKENS, MIN_TOKENS + EVERY + 1)] == [n % EVERY == 0 for n in range(MIN_TOKENS, MIN_TOKENS + EVERY + 1)]
