"""Answer extraction for multiple-choice benchmarks, scored honestly.

A reasoning model's output is split at its last ``</think>``; only the text after it (the answer)
is searched for a choice, because the reasoning weighs every option and would match them all.
Patterns are tried in a fixed order, from the most explicit to the least, and the first pattern
that finds a valid letter decides. If what it finds names two or more different options (a list
"The answer is: B… C… D.", a change of mind "the answer is A … no, the answer is C", bold headings
over several options), the output is ``ambiguous``: scored wrong and counted apart from
``unparsed`` (issue 14: "the last explicit answer wins" once credited an answer listing B, C and
D). An answer that names several options is not an answer.

What counts as a choice is deliberately narrow: only letters that are keys of the question's
options, and no fuzzy "closest option" guessing. An output we cannot read is scored as wrong
(``(None, "unparsed")``) and counted, never dropped. This differs from HuatuoGPT-o1's own scorer,
which reports the better of the first and the last match and drops empty outputs; we don't, so
our numbers are lower bounds that do not reward the scorer for trying twice.
"""

from __future__ import annotations

import re

from ..data.render import THINK_CLOSE, THINK_OPEN

HOW = ("answer_is", "chinese", "bold", "letter_line", "option_text", "ambiguous", "unparsed")

# "The answer is (B)", "answer is: B.", "Answer: B", "correct answer is B", "final answer: **C**",
# "**Answer:** B", "The answer is option B", "answer: \boxed{B}".
_ANSWER_IS = re.compile(
    r"answer(?:\*\*)?(?:\s+is\b\s*[:：]?|\s*[:：])(?:\*\*)?\s*(?:option\s+)?"
    r"(?P<open>\*\*|\(|\[|\\boxed\{)?\s*(?P<letter>[A-Za-z])(?![A-Za-z0-9])",
    re.IGNORECASE,
)
# "答案是 B", "答案为B", "答案：B", "正确答案是（B）", "最终答案：**C**".
_CHINESE = re.compile(
    r"答案\s*(?:是|为|為|应为|應為|选|選)?\s*[:：]?\s*(?:\*\*)?\s*(?:选项)?"
    r"(?P<open>\*\*|\(|（|\[|【)?\s*(?P<letter>[A-Za-z])(?![A-Za-z0-9])"
)
_BOLD_SPAN = re.compile(r"\*\*(.+?)\*\*")
# Inside a bold span: "B", "(B)", "Option B", "B. option text", "B) text", "B：文本".
_BOLD_INNER = re.compile(r"\s*(?:option\s+)?\(?(?P<letter>[A-Z])\)?\s*(?:[.:)．、：]\s*.*)?", re.IGNORECASE)
# A line that is only a letter: "B", "B.", "(B)", "B)".
_LETTER_LINE = re.compile(r"\s*\(?(?P<letter>[A-Z])\)?\s*[.．)]?\s*")
_ASCII_WORD = "A-Za-z0-9"
# More letters after a stated one, on the same line: "B… C… D.", "B, C and D", "B或C", "B、C".
_MORE_LETTERS = re.compile(r"\s*(?:[,;/、，；]|…|\.\.\.|\.|\s(?:and|or)\s|或|和)\s*\(?(?P<letter>[A-Z])\)?(?=\s*(?:$|[.,;/…、，；。]|\s(?:and|or)\s|或|和))")


def split_think(text: str) -> tuple[str, str, bool]:
    """Split an output into (reasoning, answer, closed).

    ``closed`` is True only when a ``</think>`` was seen. An output that opens ``<think>`` and
    never closes it ran out of tokens while thinking: its answer is "" so nothing in the half-done
    reasoning gets scored. Text with no think tags at all is taken as all answer (a model that does
    not think). If your chat template ends the prompt with ``<think>``, pass ``"<think>" + text``
    so an unfinished generation is recognised as unfinished.
    """
    cut = text.rfind(THINK_CLOSE)
    if cut >= 0:
        think = text[:cut].lstrip()
        if think.startswith(THINK_OPEN):
            think = think[len(THINK_OPEN) :]
        return think.strip(), text[cut + len(THINK_CLOSE) :].strip(), True
    stripped = text.lstrip()
    if stripped.startswith(THINK_OPEN):
        return stripped[len(THINK_OPEN) :].strip(), "", False
    return "", text.strip(), False


def extract_choice(answer_text: str, options: dict[str, str]) -> tuple[str | None, str]:
    """Return (letter, how) for the choice stated in ``answer_text`` (already split from the
    reasoning), (None, "ambiguous") when it names several options, or (None, "unparsed"). ``how``
    names the pattern that decided, so a report can show how much of a score rests on weak ones."""
    letters = set(options)
    for how, find in (("answer_is", _answer_is), ("chinese", _chinese), ("bold", _bold), ("letter_line", _letter_line)):
        found = [x for x in find(answer_text) if x in letters]
        if found:
            return (found[0], how) if len(set(found)) == 1 else (None, "ambiguous")
    hits = _option_text(answer_text, options)
    if len(hits) == 1:
        return hits.pop(), "option_text"
    return None, "ambiguous" if hits else "unparsed"


def _stated_letters(pattern: re.Pattern, text: str) -> list[str]:
    """Letters after an "answer is" / "答案是" cue, in order, with any listed right after it on
    the same line ("The answer is: B… C… D." gives B, C, D). A bare lowercase letter must end its
    phrase ("the answer is b." counts, "the answer is a benign tumour" does not)."""
    out = []
    for m in pattern.finditer(text):
        letter = m.group("letter")
        if letter.islower() and not m.group("open"):
            rest = text[m.end() :]
            if rest[:1] in (" ", "\t"):
                continue
        out.append(letter.upper())
        line = text[m.end() :].split("\n", 1)[0]
        while (more := _MORE_LETTERS.match(line)) is not None:
            out.append(more.group("letter"))
            line = line[more.end() :]
    return out


def _answer_is(text: str) -> list[str]:
    return _stated_letters(_ANSWER_IS, text)


def _chinese(text: str) -> list[str]:
    return _stated_letters(_CHINESE, text)


def _bold(text: str) -> list[str]:
    """``**B**`` or ``**B. option text**``: bold spans are paired left to right, as markdown
    renders them, so the text between two bold spans is never read as one."""
    out = []
    for span in _BOLD_SPAN.finditer(text):
        m = _BOLD_INNER.fullmatch(span.group(1))
        if m and m.group("letter").isupper():
            out.append(m.group("letter"))
    return out


def _letter_line(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        m = _LETTER_LINE.fullmatch(line)
        if m:
            out.append(m.group("letter"))
    return out


def _option_text(text: str, options: dict[str, str]) -> set[str]:
    """The options whose whole text appears in the answer (one: the answer; more: ambiguous).

    Matching is case-insensitive and must not cut a Latin word or number ("4.6" is not found in
    "4.62"). An occurrence that lies inside a longer option's occurrence does not count ("Pagets
    disease" inside "Pagets disease and osteopetrosis"). Two options found, or two options with the
    same text, is ambiguous: we do not guess.
    """
    spans: dict[str, list[tuple[int, int]]] = {}
    low = text.lower()
    for letter, option in options.items():
        needle = option.strip().rstrip(".。").strip().lower()
        if not needle:
            continue
        pattern = re.compile(rf"(?<![{_ASCII_WORD}]){re.escape(needle)}(?![{_ASCII_WORD}])")
        found = [m.span() for m in pattern.finditer(low)]
        if found:
            spans[letter] = found
    every = [(letter, s) for letter, ss in spans.items() for s in ss]
    hits = set()
    for letter, (a, b) in every:
        inside = any(other != letter and oa <= a and b <= ob and (ob - oa) > (b - a) for other, (oa, ob) in every)
        if not inside:
            hits.add(letter)
    return hits
