"""The rewards of `thinktune rl`, each a small pure function of one completion.

A completion is read as `thinktune eval` reads an output: split at its last ``</think>``, and the
choice read from the answer after it by the same honest extractor (`evaluate.extract`), so that an
unparsed or ambiguous answer earns nothing. `Scorer` (rl/scoring.py) calls these on what TRL
generated and hands each component to GRPOTrainer as its own reward function, logged apart.

>>> c = Completion("Both valves... </think>\\n\\nThe answer is B.", opened=True, ended=True, tokens=12)
>>> correctness(c, {"A": "aortic", "B": "mitral"}, "B"), format_reward(c), stated(c, {"A": "aortic", "B": "mitral"})
(1.0, 1.0, 1.0)
>>> overlong_penalty(Completion("...", False, False, 100), limit=100, buffer=20)
-1.0
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..data.render import THINK_CLOSE, THINK_OPEN
from ..evaluate.extract import extract_choice, split_think
from .items import normalise


@dataclass(frozen=True)
class Completion:
    """One generated completion as the rewards see it."""

    text: str  # decoded, end token removed, think tags kept
    opened: bool  # the prompt already opened <think> (the template ends with it)
    ended: bool  # it stopped on the end token (not cut at the limit)
    tokens: int  # its length in tokens, end token included

    def parts(self) -> tuple[str, str, bool]:
        """(thinking, answer, closed), as `thinktune eval` splits an output."""
        return split_think(THINK_OPEN + self.text if self.opened else self.text)


def correctness(c: Completion, options: dict[str, str], gold: str) -> float:
    """1.0 when the answer after </think> is the gold: the option the extractor reads (a
    multiple-choice item), or the short answer equal to the gold after normalisation; else 0.0
    (wrong, unparsed, ambiguous, or thinking that never closed, whose answer is empty). A
    completion with no think tags at all is all answer, as `thinktune eval` reads it."""
    _, answer, _ = c.parts()
    if options:
        return 1.0 if extract_choice(answer, options)[0] == gold else 0.0
    return 1.0 if short_answer(answer) == normalise(gold) else 0.0


def stated(c: Completion, options: dict[str, str]) -> float:
    """1.0 when the answer names exactly one option (right or wrong) or, for a short-answer item,
    states something; 0.0 when it is unparsed, ambiguous or missing."""
    _, answer, _ = c.parts()
    if options:
        return 1.0 if extract_choice(answer, options)[0] is not None else 0.0
    return 1.0 if short_answer(answer) else 0.0


def format_checks(c: Completion) -> tuple[bool, bool, bool]:
    """(one thinking section that opens first and closes, a non-empty answer after it, ended on
    the end token)."""
    full = (THINK_OPEN + c.text if c.opened else c.text).lstrip()
    section = full.startswith(THINK_OPEN) and full.count(THINK_OPEN) == 1 and full.count(THINK_CLOSE) == 1
    _, answer, closed = c.parts()
    return section, closed and bool(answer.strip()), c.ended


def format_reward(c: Completion) -> float:
    """A third for each of `format_checks`: a graded signal a small model can climb."""
    return sum(format_checks(c)) / 3


def overlong_penalty(c: Completion, limit: int, buffer: int) -> float:
    """DAPO's soft overlong punishment: 0 up to limit - buffer tokens, then falling linearly to -1
    at the limit; -1 for a completion cut at the limit (it never finished)."""
    if not c.ended and c.tokens >= limit:
        return -1.0
    start = limit - buffer
    if c.tokens <= start:
        return 0.0
    return max(-1.0, (start - c.tokens) / buffer)


_CUE = re.compile(r"(?:answer\s*(?:is|:|：)|答案\s*(?:是|为|為|：|:))\s*[:：]?\s*(?P<rest>[^\n]*)", re.IGNORECASE)


def short_answer(answer: str) -> str:
    """The stated short answer, normalised: the text after the last "the answer is" / "答案是" on
    its line, else the last non-empty line.

    >>> short_answer("Thinking done.\\nThe answer is **Mitral stenosis**.")
    'mitral stenosis'
    >>> short_answer("二尖瓣狭窄"), short_answer("   ")
    ('二尖瓣狭窄', '')
    """
    cue = _CUE.search(answer)
    if cue is not None:
        rest = cue.group("rest")
        while (again := _CUE.search(rest)) is not None:  # "... the answer is 3. No: the answer is 4."
            rest = again.group("rest")
        return normalise(rest)
    lines = [line for line in answer.splitlines() if line.strip()]
    return normalise(lines[-1]) if lines else ""
