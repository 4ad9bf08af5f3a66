"""The thinking budget (s1's "budget forcing"), one implementation for eval, compare, generate and
chat: once a row has thought for N tokens, `</think>` is inserted at the next word boundary and
the model writes its answer in the tokens that remain.

Why a word boundary: cutting "hyperten|sion" leaves the model to finish the word after `</think>`,
and it then keeps reasoning in the answer (seen in chat with `--max-thinking-tokens 60` before
issue 14). The budget waits for the first token that starts a new word (or for a CJK character,
where every character is a word) and puts the close there instead of that token.
"""

from __future__ import annotations

import unicodedata

from ..data.encode import tokenize
from ..data.render import THINK_CLOSE, THINK_OPEN

FORCED_CLOSE = "\n" + THINK_CLOSE + "\n\n"  # what the budget inserts
GRACE = 32  # tokens past the budget without a word boundary (a degenerate run-on "word"): close anyway
_TAIL = 16  # tokens decoded to spot a tag; more than any tokenizer spends on `</think>`


def is_boundary(before: str, after: str) -> bool:
    """True when `after` may follow `before` as a new word: whitespace on either side, or a CJK
    character on either side (Chinese and Japanese do not space their words). Nothing yet written
    is a boundary; a half-decoded character (U+FFFD) is not.

    >>> is_boundary("the patient", " has"), is_boundary("hyperten", "sion"), is_boundary("fever.", "\\n")
    (True, False, True)
    >>> is_boundary("高血压", "患者"), is_boundary("", "x"), is_boundary("x", "\\ufffd")
    (True, True, False)
    """
    if not before:
        return True
    if not after or after[0] == "\ufffd":
        return False
    a, b = before[-1], after[0]
    return a.isspace() or b.isspace() or _cjk(a) or _cjk(b)


def _cjk(c: str) -> bool:
    """A CJK ideograph, kana, or CJK punctuation (their own words)."""
    return "\u3000" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" or "\uff00" <= c <= "\uffef" or unicodedata.name(c, "").startswith("CJK")


class ThinkBudget:
    """One row's thinking budget. `choose(token)` takes the token the model picked and returns the
    tokens to emit instead: that token, or the first token of the forced close, whose remaining
    tokens `pending` then holds (the caller emits them one per step, as the model would).

    Thinking starts when the prompt ends with `<think>` (`opened`) or when the model writes it; it
    ends when the model writes `</think>` itself or the close is forced. `thought` counts the
    thinking tokens; `forced` says how the close came: None (it did not), "boundary", "grace".
    """

    def __init__(self, tokenizer, budget: int, opened: bool):
        self.tokenizer, self.budget = tokenizer, budget
        self.close_ids = tokenize(tokenizer, FORCED_CLOSE)
        self.state = "think" if opened else "before"  # before -> think -> done
        self.thought = 0
        self.forced: str | None = None
        self.pending: list[int] = []
        self.tail: list[int] = []

    def choose(self, token: int) -> int:
        """The token to emit now in place of the model's `token` (see the class docstring)."""
        if self.pending:
            return self.pending.pop(0)
        if self.state == "done":
            return token
        if self.state == "think" and self.thought >= self.budget:
            before, after = self._text(self.tail), self._text(self.tail + [token])
            boundary = is_boundary(before, after[len(before) :])
            if boundary or self.thought >= self.budget + GRACE:
                self.forced, self.state = ("boundary" if boundary else "grace"), "done"
                self.pending = list(self.close_ids[1:])
                return self.close_ids[0]
        self._see(token)
        return token

    def _see(self, token: int) -> None:
        """Follow the tags in what the model writes: `<think>` opens, `</think>` closes."""
        self.tail = (self.tail + [token])[-_TAIL:]
        if self.state == "think":
            self.thought += 1
            if THINK_CLOSE in self._text(self.tail):
                self.state = "done"
        elif THINK_OPEN in self._text(self.tail):
            self.state, self.tail = "think", []

    def _text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)
