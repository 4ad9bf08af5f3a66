"""Stage 2, validate: turn raw rows into Samples, collecting every row error before failing.

Rows are counted from 1 in every message (row 1 is the first object of a JSON list, the first
non-empty line of a JSONL file, the first data line of a CSV).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError


@dataclass
class Sample:
    """One training example before rendering: the prompt turns, the reasoning and the answer."""

    row: int  # 1-based row number in the source
    messages: list[dict]  # the prompt turns (system/user/assistant), ending with a user turn
    cot: str
    response: str


@dataclass
class ValidationReport:
    rows: int
    duplicates: list[tuple[int, int]] = field(default_factory=list)  # (row, first row with that question)

    def warnings(self) -> list[str]:
        if not self.duplicates:
            return []
        first = ", ".join(f"row {r} repeats row {o}" for r, o in self.duplicates[:3])
        return [f"{len(self.duplicates)} rows repeat an earlier question ({first}); they are kept."]


def validate_columns(rows: list[dict], cfg, source: str, numbers: list[int] | None = None) -> tuple[list[Sample], ValidationReport]:
    """Check the question/reasoning/answer columns of every row; raise one DataError for all.
    `numbers` are the rows' 1-based numbers in the source file (default 1..n)."""
    fields = (cfg.question_field, cfg.cot_field, cfg.response_field)
    problems: dict[tuple[str, str], list[int]] = defaultdict(list)
    samples = []
    for i, row in zip(numbers or range(1, len(rows) + 1), rows):
        values: list = []
        ok = True
        for name in fields:
            value = row.get(name)
            kind = _problem(name in row, value)
            if kind:
                problems[(name, kind)].append(i)
                ok = False
            values.append(value)
        if ok:
            q, cot, resp = values
            samples.append(Sample(i, _prompt_turns(q, cfg.system_prompt), cot.strip(), resp.strip()))
    _raise_if(problems, source, len(rows), fields)
    return samples, ValidationReport(len(rows), _duplicates(samples))


def validate_messages(rows: list[dict], cfg, source: str, numbers: list[int] | None = None) -> tuple[list[Sample], ValidationReport]:
    """Rows holding a chat list: the last turn is the assistant's, with its reasoning inside
    <think>...</think> (or in a `reasoning_content` / `reasoning` key)."""
    problems: dict[tuple[str, str], list[int]] = defaultdict(list)
    samples = []
    key = cfg.messages_field
    for i, row in zip(numbers or range(1, len(rows) + 1), rows):
        msgs: Any = row.get(key)
        kind = _messages_problem(msgs)
        if kind:
            problems[(key, kind)].append(i)
            continue
        last = msgs[-1]
        cot, response = split_reasoning(last)
        if not cot or not response:
            problems[(key, "last assistant turn has no <think> reasoning or no answer")].append(i)
            continue
        prompt = [{"role": m["role"], "content": m["content"]} for m in msgs[:-1]]
        if cfg.system_prompt and prompt[0]["role"] != "system":
            prompt.insert(0, {"role": "system", "content": cfg.system_prompt})
        samples.append(Sample(i, prompt, cot, response))
    _raise_if(problems, source, len(rows), (key,))
    return samples, ValidationReport(len(rows), _duplicates(samples))


def split_reasoning(turn: dict) -> tuple[str, str]:
    """(reasoning, answer) of an assistant turn."""
    for k in ("reasoning_content", "reasoning"):
        if isinstance(turn.get(k), str) and turn[k].strip():
            return turn[k].strip(), turn["content"].strip()
    content = turn["content"]
    if "</think>" not in content:
        return "", content.strip()
    think, answer = content.split("</think>", 1)
    return think.replace("<think>", "", 1).strip(), answer.strip()


def _prompt_turns(question: str, system: str | None) -> list[dict]:
    turns = [{"role": "system", "content": system}] if system else []
    return turns + [{"role": "user", "content": question.strip()}]


def _problem(present: bool, value) -> str | None:
    if not present:
        return "missing"
    if value is None:
        return "null"
    if not isinstance(value, str):
        return f"not a string (e.g. {type(value).__name__})"
    if not value.strip():
        return "empty"
    return None


def _messages_problem(msgs) -> str | None:
    if msgs is None:
        return "missing"
    if not isinstance(msgs, list) or not msgs:
        return "not a non-empty list of turns"
    for m in msgs:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ("system", "user", "assistant"):
            return "has a turn that is not {role: system|user|assistant, content: text}"
    if msgs[-1]["role"] != "assistant" or len(msgs) < 2 or msgs[-2]["role"] != "user":
        return "does not end with a user turn followed by an assistant turn"
    return None


def _duplicates(samples: list[Sample]) -> list[tuple[int, int]]:
    seen: dict[str, int] = {}
    dups = []
    for s in samples:
        q = s.messages[-1]["content"]
        if q in seen:
            dups.append((s.row, seen[q]))
        else:
            seen[q] = s.row
    return dups


def _raise_if(problems: dict, source: str, n_rows: int, fields: tuple) -> None:
    if not problems:
        return
    bad_rows = sorted({r for rows in problems.values() for r in rows})
    parts = []
    for (name, kind), rows in problems.items():
        shown = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
        parts.append(f"field '{name}' {kind} in {len(rows)} row{'s' if len(rows) > 1 else ''} (row {shown})")
    raise DataError(
        f"Data file {source}: {len(bad_rows)} of {n_rows} rows cannot be used: {'; '.join(parts)}. "
        f"Rows are counted from 1. Every row needs non-empty text in {', '.join(repr(f) for f in fields)}; "
        "fix those rows, or map other column names with data.question_field / data.cot_field / "
        "data.response_field (or data.format=messages). Nothing was written."
    )
