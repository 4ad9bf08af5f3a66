"""Benchmark loading and prompts for medical multiple-choice evaluation.

Two file shapes are read:

- "mcq": a JSON list of ``{question, options{A..}, answer_idx, answer}`` rows, the evaluation
  format of HuatuoGPT-o1 (MedQA, MedMCQA, PubMedQA; PubMedQA's options are A yes / B no / C maybe).
- "cmb": JSON lines of ``{id, prompt, gt_answer, meta}`` (CMB, a Chinese medical exam). The
  options are only inside ``prompt``, as its last lines ``A. text``; we parse them out so that
  answers can be checked against the option letters and matched by option text.

Every problem in a file is collected and raised as one DataError naming the file, the rows and
the field, so a broken file is fixed in one pass. Rows of a JSON list are counted from 1; rows of
a JSONL file are named by their line number. The prompt wording lives only in the constants
below, so every run and every report uses the same text.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import DataError, UserError

BENCHMARKS = {
    "medqa": ("medqa_usmle_test.json", "mcq"),
    "medmcqa": ("medmcqa_validation.json", "mcq"),
    "pubmedqa": ("pubmedqa_test.json", "mcq"),
    "cmb": ("cmb_single_choice_905.jsonl", "cmb"),
}
EVAL_DIR_ENV = "THINKTUNE_EVAL_DIR"
MIN_OPTIONS, MAX_OPTIONS = 2, 10

# Rows of the shipped files that no model can get right, left out by file name and row id (only
# while the row is still broken). hf_cmb_000098 lists options A-D (①..④) but its gold is E: the
# source lost option E (in CMB such questions end with a combined option like "E. ①②③④").
KNOWN_UNSCORABLE = {
    "cmb_single_choice_905.jsonl": {"hf_cmb_000098": "gold answer E is not among its options A-D"},
}

ENGLISH_PROMPT = "Please answer the following multiple-choice question:\n{question}\n{options}"
ANSWER_SUFFIX = "\nEnd your response with 'The answer is X.', where X is the letter of the correct option."
CMB_PROMPT = "以下是中国{exam_type}中{exam_class}考试的一道{question_type}，请分析每个选项，并最后给出答案。\n{question}"
# The CMB rows shipped here carry no exam_type / exam_class in their meta (only question_type,
# subject and explanation, the last two empty); filling CMB_PROMPT with blanks would read
# "中国中考试" ("high-school entrance exam"), so such rows get this header instead.
CMB_PROMPT_NO_EXAM = "以下是中国医学考试的一道{question_type}，请分析每个选项，并最后给出答案。\n{question}"
CMB_HEADER_START = "以下是中国"
CMB_ANSWER_SUFFIX = "\n请在回答的最后写出“答案是X”，X为正确选项的字母。"
CMB_DEFAULT_QUESTION_TYPE = "单项选择题"

_CMB_OPTION_LINE = re.compile(r"\s*([A-Z])\s*[.．、:：]\s*(.*\S)\s*")


@dataclass
class Item:
    """One benchmark question. For CMB rows ``question`` is the whole prompt, options included
    (that is how CMB poses it); ``options`` are parsed from it."""

    id: str
    question: str
    options: dict[str, str]
    gold: str
    meta: dict = field(default_factory=dict)


def default_data_dir() -> Path:
    """$THINKTUNE_EVAL_DIR, else ../shared/data/eval from the current directory (the data sits
    beside the project, never inside it)."""
    env = os.environ.get(EVAL_DIR_ENV)
    return Path(env) if env else (Path.cwd() / ".." / "shared" / "data" / "eval").resolve()


def load_bench(name_or_path: str, data_dir: Path | None = None, limit: int | None = None, seed: int | None = None) -> tuple[list[Item], str]:
    """Load a benchmark by name (medqa, medmcqa, pubmedqa, cmb) or from a file path.

    Returns the items and the format name ("mcq" or "cmb"), which ``render_question`` needs.
    ``limit`` alone keeps the first N items (a quick run sees the same questions every time);
    with ``seed`` it keeps a random.Random(seed) sample of N, returned in file order. Rows listed
    in KNOWN_UNSCORABLE are left out before selecting.
    """
    if limit is not None and limit < 1:
        raise UserError(f"limit must be a positive number of questions, got {limit}.")
    path, fmt = _resolve(name_or_path, data_dir)
    items = _read_cmb(path) if fmt == "cmb" else _read_mcq(path)
    return _select(items, limit, seed), fmt


def _resolve(name_or_path: str, data_dir: Path | None) -> tuple[Path, str]:
    known = ", ".join(BENCHMARKS)
    key = name_or_path.strip().lower()
    if key in BENCHMARKS:
        file_name, fmt = BENCHMARKS[key]
        path = Path(data_dir) if data_dir is not None else default_data_dir()
        path = path / file_name
        if not path.is_file():
            raise DataError(
                f"Benchmark '{key}' is read from {path}, which does not exist. Put the evaluation "
                f"files there, set {EVAL_DIR_ENV} to the folder that holds them, or give a file path. "
                f"Known benchmark names: {known}."
            )
        return path, fmt
    path = Path(name_or_path)
    if not path.is_file():
        raise DataError(
            f"Benchmark file {path} does not exist, and '{name_or_path}' is not a known benchmark name "
            f"({known}). Give one of those names, a JSON list of {{question, options, answer_idx}} rows, "
            "or a JSONL file of {id, prompt, gt_answer, meta} rows."
        )
    return path, _sniff_format(path)


def _sniff_format(path: Path) -> str:
    """.jsonl is CMB-shaped, .json is a HuatuoGPT list; otherwise a file starting with '[' is a list."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return "cmb" if suffix == ".jsonl" else "mcq"
    return "mcq" if _read_text(path).lstrip().startswith("[") else "cmb"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"Benchmark file {path} is not UTF-8 text (byte {e.start}); save it as UTF-8.") from None


class _Problems:
    """Row problems grouped by what is wrong, so one message lists them all."""

    def __init__(self, path: Path, unit: str, shape: str):
        self.path, self.unit, self.shape = path, unit, shape
        self.rows: dict[str, list[int]] = defaultdict(list)

    def add(self, row: int, what: str) -> None:
        self.rows[what].append(row)

    def raise_if_any(self, n_rows: int) -> None:
        if not self.rows:
            return
        bad = len({r for rows in self.rows.values() for r in rows})
        parts = []
        for what, rows in self.rows.items():
            shown = ", ".join(map(str, rows[:5])) + (", ..." if len(rows) > 5 else "")
            plural = "s" if len(rows) > 1 else ""
            parts.append(f"{what} in {len(rows)} {self.unit}{plural} ({self.unit} {shown})")
        counted = "Rows are counted from 1" if self.unit == "row" else "Lines are counted from 1"
        raise DataError(
            f"Benchmark file {self.path}: {bad} of {n_rows} {self.unit}s cannot be used: {'; '.join(parts)}. {counted}. {self.shape} Nothing was loaded."
        )


_MCQ_SHAPE = f"Each row must be an object with a non-empty 'question', 'options' mapping {MIN_OPTIONS} to {MAX_OPTIONS} capital letters to non-empty text, and an 'answer_idx' that is one of those letters."
_CMB_SHAPE = (
    "Each line must be a JSON object with a non-empty 'prompt' that ends with one option per line "
    f"('A. text', {MIN_OPTIONS} to {MAX_OPTIONS} of them, from A in order), and a 'gt_answer' that is "
    "one of those letters."
)


def _read_mcq(path: Path) -> list[Item]:
    text = _read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(
            f"Benchmark file {path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}. It must be one JSON list of question objects."
        ) from None
    if not isinstance(data, list) or not data:
        got = "an empty list" if data == [] else f"a {type(data).__name__}"
        raise DataError(f"Benchmark file {path}: expected a JSON list of question objects, got {got}.")
    problems = _Problems(path, "row", _MCQ_SHAPE)
    items = [_mcq_item(n, row, problems) for n, row in enumerate(data, start=1)]
    _check_ids(items, problems)
    problems.raise_if_any(len(data))
    return [i for i in items if i is not None]  # all of them: a None was a problem, raised above


def _mcq_item(n: int, row, problems: _Problems) -> Item | None:
    if not isinstance(row, dict):
        problems.add(n, "the row is not a JSON object")
        return None
    ok = _check_text(n, row, "question", problems)
    options: Any = row.get("options")
    if "options" not in row:
        problems.add(n, "field 'options' is missing")
        ok = False
    elif not _check_options(n, options, "options", problems):
        ok = False
    if "answer_idx" not in row:
        problems.add(n, "field 'answer_idx' is missing")
        ok = False
    elif ok and (not isinstance(row["answer_idx"], str) or row["answer_idx"] not in options):
        problems.add(n, "field 'answer_idx' is not one of the row's option letters")
        ok = False
    if not ok:
        return None
    meta = {k: v for k, v in row.items() if k not in ("id", "question", "options", "answer_idx")}
    return Item(_row_id(row, n), row["question"], dict(options), row["answer_idx"], meta)


def _check_text(n: int, row: dict, name: str, problems: _Problems) -> bool:
    if name not in row:
        problems.add(n, f"field '{name}' is missing")
        return False
    if not isinstance(row[name], str) or not row[name].strip():
        problems.add(n, f"field '{name}' is not a non-empty string")
        return False
    return True


def _check_options(n: int, options, name: str, problems: _Problems) -> bool:
    """Options are {letter: text}: 2 to 10 of them, single capital letters, non-empty string text."""
    if not isinstance(options, dict):
        problems.add(n, f"field '{name}' is not an object of letter -> text")
        return False
    if len(options) < MIN_OPTIONS:
        problems.add(n, f"field '{name}' has fewer than {MIN_OPTIONS} options")
        return False
    if len(options) > MAX_OPTIONS:
        problems.add(n, f"field '{name}' has more than {MAX_OPTIONS} options")
        return False
    ok = True
    if not all(isinstance(k, str) and len(k) == 1 and "A" <= k <= "Z" for k in options):
        problems.add(n, f"field '{name}' has a key that is not a single capital letter")
        ok = False
    if not all(isinstance(v, str) for v in options.values()):
        problems.add(n, f"field '{name}' has an option text that is not a string")
        ok = False
    elif not all(v.strip() for v in options.values()):
        problems.add(n, f"field '{name}' has an empty option text")
        ok = False
    return ok


def _row_id(row: dict, n: int) -> str:
    return str(row["id"]) if row.get("id") is not None else str(n)


def _check_ids(items: Sequence[Item | None], problems: _Problems, numbers: list[int] | None = None) -> None:
    """Ids must be unique: paired comparisons of two runs join on them."""
    seen = set()
    for i, item in enumerate(items):
        if item is None:
            continue
        if item.id in seen:
            problems.add(numbers[i] if numbers else i + 1, "field 'id' repeats an earlier row's id")
        seen.add(item.id)


def _read_cmb(path: Path) -> list[Item]:
    problems = _Problems(path, "line", _CMB_SHAPE)
    unscorable = KNOWN_UNSCORABLE.get(path.name, {})
    items, numbers, n_rows = [], [], 0
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        n_rows += 1
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            problems.add(lineno, "the line is not valid JSON")
            continue
        item = _cmb_item(lineno, row, problems)
        if item is None or (item.gold not in item.options and item.id in unscorable):
            continue
        if item.gold not in item.options:
            problems.add(lineno, "field 'gt_answer' is not one of the option letters parsed from 'prompt'")
            continue
        items.append(item)
        numbers.append(lineno)
    if n_rows == 0:
        raise DataError(f"Benchmark file {path} has no rows. {_CMB_SHAPE}")
    _check_ids(items, problems, numbers)
    problems.raise_if_any(n_rows)
    return items


def _cmb_item(n: int, row, problems: _Problems) -> Item | None:
    """A CMB row as an Item; its gold letter is checked against the options by the caller."""
    if not isinstance(row, dict):
        problems.add(n, "the line is not a JSON object")
        return None
    ok = _check_text(n, row, "prompt", problems)
    options = parse_cmb_options(row["prompt"]) if ok else {}
    if ok and len(options) < MIN_OPTIONS:
        problems.add(n, f"field 'prompt' does not end with {MIN_OPTIONS} or more option lines 'A. text'")
        ok = False
    elif ok and len(options) > MAX_OPTIONS:
        problems.add(n, f"field 'prompt' has more than {MAX_OPTIONS} option lines")
        ok = False
    gold: Any = row.get("gt_answer")
    if "gt_answer" not in row:
        problems.add(n, "field 'gt_answer' is missing")
        ok = False
    elif not isinstance(gold, str) or not re.fullmatch(r"[A-Z]", gold.strip()):
        problems.add(n, "field 'gt_answer' is not a single capital letter")
        ok = False
    if "meta" in row and not isinstance(row["meta"], dict):
        problems.add(n, "field 'meta' is not an object")
        ok = False
    if not ok:
        return None
    meta = dict(row.get("meta") or {})
    meta.update({k: v for k, v in row.items() if k not in ("id", "prompt", "gt_answer", "meta") and k not in meta})
    return Item(_row_id(row, n), row["prompt"], options, gold.strip(), meta)


def parse_cmb_options(prompt: str) -> dict[str, str]:
    """The options at the end of a CMB prompt: the last run of lines "A. text", "B. text", ...

    The run must start at A and go on in order; anything else gives {} (the caller reports it),
    because a half-parsed option list would silently make some answers unmatchable.
    """
    lines = prompt.rstrip().split("\n")
    found = []
    for line in reversed(lines):
        m = _CMB_OPTION_LINE.fullmatch(line)
        if not m:
            break
        found.append((m.group(1), m.group(2)))
    found.reverse()
    letters = "".join(letter for letter, _ in found)
    if not found or letters != "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(found)] or len(found) == len(lines):
        return {}
    return dict(found)


def _select(items: list[Item], limit: int | None, seed: int | None) -> list[Item]:
    if limit is None or limit >= len(items):
        return items
    if seed is None:
        return items[:limit]
    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]


def format_options(options: dict[str, str]) -> str:
    """Options as lines "A. text", in the row's own order."""
    return "\n".join(f"{letter}. {text}" for letter, text in options.items())


def render_question(item: Item, fmt: str, ask_answer_line: bool = False) -> str:
    """The user-turn text for one item, without any chat template (the caller applies the model's
    own). ``ask_answer_line`` adds a request for a closing "The answer is X." line ("答案是X" for
    CMB), which makes extraction rest on the explicit pattern rather than on weaker ones."""
    if fmt == "mcq":
        text = ENGLISH_PROMPT.format(question=item.question, options=format_options(item.options))
        return text + (ANSWER_SUFFIX if ask_answer_line else "")
    if fmt == "cmb":
        return _cmb_text(item) + (CMB_ANSWER_SUFFIX if ask_answer_line else "")
    raise ValueError(f"unknown benchmark format {fmt!r}; expected 'mcq' or 'cmb'")


def _cmb_text(item: Item) -> str:
    """CMB's own header, unless the prompt already starts with one (so it is never doubled)."""
    if item.question.lstrip().startswith(CMB_HEADER_START):
        return item.question
    question_type = item.meta.get("question_type") or CMB_DEFAULT_QUESTION_TYPE
    exam_type, exam_class = item.meta.get("exam_type"), item.meta.get("exam_class")
    if exam_type and exam_class:
        return CMB_PROMPT.format(exam_type=exam_type, exam_class=exam_class, question_type=question_type, question=item.question)
    return CMB_PROMPT_NO_EXAM.format(question_type=question_type, question=item.question)
