"""Stage 2, validate: turn raw rows into Samples, collecting every row error before failing.

Rows are counted from 1 in every message (row 1 is the first object of a JSON list, the first
non-empty line of a JSONL file, the first data line of a CSV).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..errors import DataError

ROLES = ("system", "user", "assistant")
# JSON's \ud800-style escapes can spell half of a UTF-16 pair (an emoji cut in two, say): such a
# lone surrogate is no character, so it cannot be encoded and the tokenizer fails on it.
_SURROGATE = re.compile("[\ud800-\udfff]")
# C0 controls but tab, newline and carriage return (normal in text), DEL and the C1 controls:
# invisible, usually left over from a PDF, a terminal or a wrong encoding, yet they are trained on.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_C0_NAMES = "NUL SOH STX ETX EOT ENQ ACK BEL BS HT LF VT FF CR SO SI DLE DC1 DC2 DC3 DC4 NAK SYN ETB CAN EM SUB ESC FS GS RS US".split()


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
    control: list[tuple[int, str, list[str]]] = field(default_factory=list)  # (row, field, its control characters)

    def warnings(self) -> list[str]:
        out = []
        if self.duplicates:
            first = ", ".join(f"row {r} repeats row {o}" for r, o in self.duplicates[:3])
            out.append(f"{len(self.duplicates)} rows repeat an earlier question ({first}); they are kept.")
        return out + _control_warnings(self.control)


def validate_columns(rows: list[dict], cfg, source: str, numbers: list[int] | None = None) -> tuple[list[Sample], ValidationReport]:
    """Check the question/reasoning/answer columns of every row; raise one DataError for all.
    `numbers` are the rows' 1-based numbers in the source file (default 1..n)."""
    fields = (cfg.question_field, cfg.cot_field, cfg.response_field)
    problems: dict[tuple[str, str], list[int]] = defaultdict(list)
    samples, control = [], []
    for i, row in zip(numbers or range(1, len(rows) + 1), rows):
        values: list = []
        ok = True
        for name in fields:
            value = row.get(name)
            kind = text_problem(name in row, value)
            if kind:
                problems[(name, kind)].append(i)
                ok = False
            values.append(value)
        if ok:
            q, cot, resp = values
            sample = Sample(i, _prompt_turns(q, cfg.system_prompt), cot.strip(), resp.strip())
            samples.append(sample)
            control += _controls(i, dict(zip(fields, (sample.messages[-1]["content"], sample.cot, sample.response))))
    _raise_if(problems, source, len(rows), fields)
    return samples, ValidationReport(len(rows), _duplicates(samples), control)


def validate_messages(rows: list[dict], cfg, source: str, numbers: list[int] | None = None) -> tuple[list[Sample], ValidationReport]:
    """Rows holding a chat list: the last turn is the assistant's, with its reasoning inside
    <think>...</think> (or in a `reasoning_content` / `reasoning` key)."""
    problems: dict[tuple[str, str], list[int]] = defaultdict(list)
    samples, control = [], []
    key = cfg.messages_field
    for i, row in zip(numbers or range(1, len(rows) + 1), rows):
        msgs: Any = row.get(key)
        kind = turns_problem(msgs)
        if not kind and (msgs[-1]["role"] != "assistant" or len(msgs) < 2 or msgs[-2]["role"] != "user"):
            kind = "does not end with a user turn followed by an assistant turn"
        if kind:
            problems[(key, kind)].append(i)
            continue
        cot, response = split_reasoning(msgs[-1])
        if not cot or not response:
            problems[(key, "last assistant turn has no <think> reasoning or no answer")].append(i)
            continue
        prompt = [{"role": m["role"], "content": m["content"]} for m in msgs[:-1]]
        control += _controls(i, {key: "\n".join([m["content"] for m in prompt] + [cot, response])})
        if cfg.system_prompt and prompt[0]["role"] != "system":
            prompt.insert(0, {"role": "system", "content": cfg.system_prompt})
        samples.append(Sample(i, prompt, cot, response))
    _raise_if(problems, source, len(rows), (key,))
    return samples, ValidationReport(len(rows), _duplicates(samples), control)


def invalid_text(text: str) -> str | None:
    """What makes this text unusable for any tokenizer, or None (see _SURROGATE)."""
    m = _SURROGATE.search(text)
    if m is None:
        return None
    return (
        f"holds an invalid character (a lone UTF-16 surrogate, \\u{ord(m.group()):04x}: half of a character "
        "such as an emoji; remove it or replace it with the whole character)"
    )


def turns_problem(msgs) -> str | None:
    """What is wrong with a chat list of {role, content} turns, or None; training data and
    `thinktune generate` input share it."""
    if msgs is None:
        return "missing"
    if not isinstance(msgs, list) or not msgs:
        return "not a non-empty list of turns"
    for n, turn in enumerate(msgs, start=1):
        problem = _turn_problem(turn)
        if problem:
            return f"turn {n} {problem}"
    return None


def control_names(text: str) -> list[str]:
    """The control characters in a text, each named once, in order of appearance."""
    names: list[str] = []
    for c in _CONTROL.findall(text):
        o = ord(c)
        name = _C0_NAMES[o] if o < 32 else "DEL" if o == 127 else f"U+{o:04X}"
        if name not in names:
            names.append(name)
    return names


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


def text_problem(present: bool, value) -> str | None:
    """What keeps a field from being usable text (missing, null, not a string, empty, invalid), or None."""
    if not present:
        return "missing"
    if value is None:
        return "null"
    if not isinstance(value, str):
        return f"not a string (e.g. {type(value).__name__})"
    if not value.strip():
        return "empty"
    return invalid_text(value)


def _turn_problem(turn) -> str | None:
    if not isinstance(turn, dict):
        return f"is not an object {{role, content}} ({type(turn).__name__})"
    role = turn.get("role")
    if role not in ROLES:
        return "has no 'role'" if role is None else f"has role {role!r}, not system, user or assistant"
    if "content" not in turn:
        return "has no 'content'"
    if not isinstance(turn["content"], str):
        return f"has a non-text 'content' ({type(turn['content']).__name__})"
    # split_reasoning reads the reasoning keys too, so they reach the tokenizer as well
    texts = [turn["content"]] + [turn[k] for k in ("reasoning_content", "reasoning") if isinstance(turn.get(k), str)]
    return next((p for t in texts if (p := invalid_text(t))), None)


def _controls(row: int, texts: dict[str, str]) -> list[tuple[int, str, list[str]]]:
    return [(row, name, names) for name, text in texts.items() if (names := control_names(text))]


def _control_warnings(found: list[tuple[int, str, list[str]]]) -> list[str]:
    """One warning per field: how many rows hold control characters, which, and where."""
    by_field: dict[str, tuple[list[int], list[str]]] = {}
    for row, name, chars in found:
        rows, names = by_field.setdefault(name, ([], []))
        rows.append(row)
        names += [c for c in chars if c not in names]
    out = []
    for name, (rows, names) in by_field.items():
        n = len(rows)
        out.append(
            f"{n} row{'s hold' if n > 1 else ' holds'} control characters ({', '.join(names)}) in '{name}': "
            f"row{'s' if n > 1 else ''} {row_list(rows)}; they are kept as they are (remove them if the model should not learn them)."
        )
    return out


def row_list(rows: list[int]) -> str:
    """Row numbers for a message: the first five, then dots."""
    return ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")


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
    raise DataError(
        f"Data file {source}: {describe_problems(problems, n_rows)}. "
        f"Rows are counted from 1. Every row needs non-empty text in {', '.join(repr(f) for f in fields)}; "
        "fix those rows, or map other column names with data.question_field / data.cot_field / "
        "data.response_field (or data.format=messages). Nothing was written."
    )


def describe_problems(problems: dict[tuple[str, str], list[int]], n_rows: int) -> str:
    """How many rows are bad, then each (field, kind) with its rows: "2 of 9 rows cannot be used:
    field 'x' empty in 1 row (row 4); ..."; training data and `thinktune generate` input share it."""
    bad_rows = {r for rows in problems.values() for r in rows}
    parts = [f"field '{name}' {kind} in {len(rows)} row{'s' if len(rows) > 1 else ''} (row {row_list(rows)})" for (name, kind), rows in problems.items()]
    return f"{len(bad_rows)} of {n_rows} rows cannot be used: {'; '.join(parts)}"
