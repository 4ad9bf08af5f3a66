"""Stage-two data: items whose answers can be checked, and the filter that keeps the test out.

Multiple-choice items are read by the evaluation's own loader (`evaluate.bench`: MedQA / MedMCQA /
PubMedQA JSON lists, CMB JSONL, or a file of that shape), so RL and `thinktune eval` pose a question
the same way. Short-answer items are a .json list or .jsonl of ``{question, answer}`` rows; the
answer is compared with the gold after `normalise`. Items whose normalised question also appears in
a benchmark the user will evaluate on (rl.exclude) are removed and counted (`drop_contaminated`).
"""

from __future__ import annotations

import json
import random
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ..data.render import render_prompt
from ..errors import DataError
from ..evaluate.bench import BENCHMARKS, Item, load_bench, render_question

SHORT_SUFFIX = "\nEnd your response with 'The answer is X.', where X is your short final answer."
_SHORT_SHAPE = "Each row must be an object with a non-empty 'question' and a non-empty 'answer' (text or a number)."
_ARTICLES = re.compile(r"^(?:the|a|an) ")


def normalise(text: str) -> str:
    """Text as compared: Unicode-folded (full-width to ASCII), case-folded, punctuation and
    markdown to spaces, spaces collapsed, a leading English article dropped.

    >>> normalise("  The **Mitral** valve. ")
    'mitral valve'
    >>> normalise("ＡＢＣ，二尖瓣！"), normalise("3.5 mg/dL")
    ('abc 二尖瓣', '3 5 mg dl')
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = " ".join(re.sub(r"[\W_]+", " ", text).split())
    return _ARTICLES.sub("", text)


@dataclass
class Items:
    """The items of one RL run: what was read, and what was left out and why."""

    items: list[Item]
    fmt: str  # "mcq" | "cmb" | "short"
    source: str
    read: int
    removed: dict[str, int]  # benchmark -> items removed because their question is in it

    def prompt_text(self, item: Item, ask_answer_line: bool) -> str:
        """The user turn of one item, as `thinktune eval` words it."""
        if self.fmt == "short":
            return item.question + (SHORT_SUFFIX if ask_answer_line else "")
        return render_question(item, self.fmt, ask_answer_line)

    def rendered(self, tokenizer, item: Item, ask_answer_line: bool) -> str:
        """The whole prompt through the model's chat template: what RL trains on and the demo measures."""
        return render_prompt(tokenizer, [{"role": "user", "content": self.prompt_text(item, ask_answer_line)}])


def load_items(source: str, limit: int | None = None, seed: int = 0) -> Items:
    """A benchmark name, a benchmark-shaped file, or a short-answer file; `limit` keeps a seeded
    random sample (the file order kept)."""
    if source.strip().lower() in BENCHMARKS or not _is_short(Path(source)):
        items, fmt = load_bench(source)
    else:
        items, fmt = _read_short(Path(source)), "short"
    read = len(items)
    if limit is not None and limit < len(items):
        keep = sorted(random.Random(seed).sample(range(len(items)), limit))
        items = [items[i] for i in keep]
    return Items(items, fmt, source, read, {})


def drop_contaminated(data: Items, benchmarks: list[str], held: dict[str, list[Item]] | None = None) -> Items:
    """Remove the items whose normalised question is in one of `benchmarks` (loaded by name or
    path) or in `held` (name -> items already loaded, e.g. the demo's held-out split), and count
    them per benchmark."""
    sets = {name: {normalise(i.question) for i in load_bench(name)[0]} for name in benchmarks}
    sets.update({name: {normalise(i.question) for i in items} for name, items in (held or {}).items()})
    kept, removed = [], dict.fromkeys(sets, 0)
    for item in data.items:
        q = normalise(item.question)
        hit = next((name for name, qs in sets.items() if q in qs), None)
        if hit is None:
            kept.append(item)
        else:
            removed[hit] += 1
    return Items(kept, data.fmt, data.source, data.read, {**data.removed, **removed})


def _is_short(path: Path) -> bool:
    """A file whose first row has an 'answer' and neither 'options' nor 'prompt'."""
    first = _rows(path)[:1] if path.is_file() else []
    return bool(first) and isinstance(first[0][1], dict) and "answer" in first[0][1] and not {"options", "prompt"} & set(first[0][1])


def _rows(path: Path) -> list[tuple[int, object]]:
    """(row number, value): JSON list rows counted from 1, JSONL rows by line number."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"Data file {path} is not UTF-8 text (byte {e.start}); save it as UTF-8.") from None
    if path.suffix.lower() == ".jsonl":
        out = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    out.append((n, json.loads(line)))
                except json.JSONDecodeError as e:
                    raise DataError(f"Data file {path}, line {n}: not valid JSON ({e.msg}). {_SHORT_SHAPE}") from None
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"Data file {path} is not valid JSON: {e.msg} at line {e.lineno}. It must be a JSON list of rows, or JSON lines.") from None
    if not isinstance(data, list):
        raise DataError(f"Data file {path}: expected a JSON list of rows, got a {type(data).__name__}. {_SHORT_SHAPE}")
    return list(enumerate(data, start=1))


def _read_short(path: Path) -> list[Item]:
    """Every row checked; all problems named in one error, nothing loaded."""
    items, bad = [], []
    for n, row in _rows(path):
        if not isinstance(row, dict):
            bad.append(f"row {n}: not an object")
            continue
        q, a = row.get("question"), row.get("answer")
        if not isinstance(q, str) or not q.strip():
            bad.append(f"row {n}: field 'question' is missing or empty")
        elif not isinstance(a, (str, int, float)) or isinstance(a, bool) or not normalise(str(a)):
            bad.append(f"row {n}: field 'answer' is missing, empty or not text")
        else:
            items.append(Item(str(row.get("id", n)), q, {}, str(a)))
    if bad:
        shown = "; ".join(bad[:5]) + ("; ..." if len(bad) > 5 else "")
        raise DataError(
            f"Data file {path}: {len(bad)} row(s) cannot be used: {shown}. Rows are counted from 1 (lines, for JSONL). {_SHORT_SHAPE} Nothing was loaded."
        )
    if not items:
        raise DataError(f"Data file {path} has no rows. {_SHORT_SHAPE}")
    return items
