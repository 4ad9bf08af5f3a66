"""The data pipeline as named stages: load -> select -> validate -> render -> encode -> cut -> split.

Each stage records what it dropped or cut, and every row ends with a fate that `thinktune data
check` prints and the run summary counts.
"""

from __future__ import annotations

import math
import random
import statistics
import unicodedata
from dataclasses import asdict, dataclass, field

from ..errors import DataError
from .encode import IGNORE_INDEX, bos_prefix, encode_example, eos_id, tokenize
from .load import load_rows
from .render import answer_prefix, has_template, render_completion, render_prompt
from .validate import validate_columns, validate_messages


@dataclass
class RowFate:
    row: int
    fate: str  # train | val | dropped | not selected
    tokens: int = 0  # full length before any cut
    prompt_tokens: int = 0
    note: str = ""


@dataclass
class DataReport:
    source: str
    rows_read: int = 0
    rows_selected: int = 0
    max_length: int = 0
    max_length_reason: str = ""
    overflow: str = "drop"
    over_length: int = 0  # rows longer than max_length
    dropped: int = 0
    prompt_cut: int = 0  # of the dropped: rows truncate would cut inside their prompt (no token left to learn)
    truncated: int = 0
    answer_lost: int = 0  # of the over-length rows: how many would lose the whole answer
    train_answer_lost: int = 0  # training rows that keep no token of their answer (overflow=truncate)
    duplicate_groups: int = 0  # questions asked by more than one row (each group stays on one side of the split)
    duplicate_rows: int = 0  # rows in those groups
    train_rows: int = 0
    val_rows: int = 0
    train_tokens: int = 0  # all positions of the training rows
    trained_tokens: int = 0  # labelled positions of the training rows (one epoch)
    heldout_tokens: int = 0  # labelled positions of the held-out rows (0: no held-out loss can be measured)
    length_median: float = 0
    length_p90: float = 0
    length_max: int = 0
    template: str = ""
    warnings: list[str] = field(default_factory=list)
    rows: list[RowFate] = field(default_factory=list)

    def to_dict(self, with_rows: bool = True) -> dict:
        d = asdict(self)
        if not with_rows:
            d.pop("rows")
        return d


@dataclass
class Prepared:
    train: list[dict]
    val: list[dict]
    report: DataReport


def prepare(data_cfg, tokenizer, seed: int = 42, rows: list[dict] | None = None) -> Prepared:
    """Run every stage on the configured data with this tokenizer."""
    report = DataReport(source=data_cfg.path, overflow=data_cfg.overflow)
    rows = load_rows(data_cfg.path, data_cfg.hub_config, data_cfg.split) if rows is None else rows
    report.rows_read = len(rows)
    chosen = _select(len(rows), data_cfg.limit, data_cfg.sample, seed)
    report.rows_selected = len(chosen)
    chosen_set = set(chosen)
    fates = {i + 1: RowFate(i + 1, "not selected", note=f"beyond data.limit={data_cfg.limit}") for i in range(len(rows)) if i not in chosen_set}

    validate = validate_messages if data_cfg.format == "messages" else validate_columns
    samples, vreport = validate([rows[i] for i in chosen], data_cfg, data_cfg.path, numbers=[i + 1 for i in chosen])
    report.warnings += vreport.warnings()
    report.template = "chat template" if has_template(tokenizer) else "plain (no chat template)"

    eos, encoded = eos_id(tokenizer), []
    for sample in samples:
        prompt_ids, completion_ids, answer_start = render_ids(tokenizer, sample)
        ex = encode_example(prompt_ids, completion_ids, eos, data_cfg.train_on_prompt)  # the labels
        # question: for display (demo, reports) and the split; the collator reads only ids and labels
        encoded.append({**ex, "row": sample.row, "question": sample.messages[-1]["content"], "prompt_tokens": len(prompt_ids), "answer_start": answer_start})
    kept = _cut(encoded, data_cfg, report, fates)
    train, val = _split(kept, data_cfg.val_fraction, data_cfg.val_min_rows, seed, data_cfg.path, report)
    for name, part in (("train", train), ("val", val)):
        for ex in part:
            fates[ex["row"]].fate = name
    report.train_rows, report.val_rows = len(train), len(val)
    report.train_tokens = sum(len(e["input_ids"]) for e in train)
    report.trained_tokens, report.heldout_tokens = (sum(sum(1 for x in e["labels"] if x != IGNORE_INDEX) for e in part) for part in (train, val))
    report.train_answer_lost = sum(e["answer_start"] >= len(e["input_ids"]) for e in train)
    if train and report.train_answer_lost > len(train) / 4:
        report.warnings.append(
            f"{report.train_answer_lost} of {len(train)} training rows lose their whole answer to max_length "
            f"{report.max_length} (data.overflow=truncate): they teach the model to think and never answer; "
            "raise data.max_length or use data.overflow=drop."
        )
    report.rows = [fates[r] for r in sorted(fates)]
    return Prepared(train, val, report)


def report_lines(r: DataReport) -> list[tuple[str, str]]:
    """The data report for the console, as (level, text) lines: `train` and `data check` show it."""
    lines = [
        (
            "info",
            f"Data: {r.rows_read} rows read from {r.source}, {r.rows_selected} selected; "
            f"max_length {r.max_length} ({r.max_length_reason}); {r.over_length} over it "
            f"({r.dropped} dropped{f' ({r.prompt_cut} cut inside their prompt)' if r.prompt_cut else ''}, {r.truncated} truncated, {r.answer_lost} would lose their whole answer); "
            f"{r.train_rows} train / {r.val_rows} held-out rows; {r.trained_tokens:,} labelled tokens per epoch.",
        )
    ]
    if r.duplicate_groups:
        lines.append(
            (
                "info",
                f"Duplicates: {r.duplicate_groups} question(s) asked by more than one row ({r.duplicate_rows} rows); each such group is kept whole on one side of the train / held-out split.",
            )
        )
    return lines + [("warning", w) for w in r.warnings]


def refuse_answerless(report: DataReport) -> None:
    """Training on rows that all lost their answer makes a model that never answers: refuse it
    (issue 11; seen: a finished run with no warning at all). A row with nothing to learn never gets
    here: `_cut` drops it (issue 13)."""
    if report.train_rows and report.train_answer_lost == report.train_rows:
        raise DataError(
            f"Data file {report.source}: every one of the {report.train_rows} training rows loses its whole answer "
            f"when cut to max_length {report.max_length} (data.overflow=truncate), so the model would learn to think "
            "and never answer. Raise data.max_length (or data.max_length_cap), or use data.overflow=drop to train only "
            "on rows that fit; `thinktune data check` lists every row's length."
        )


def normalize_question(text: str) -> str:
    """The form in which two questions count as the same: Unicode-normalised (NFKC), case-folded,
    white space collapsed.

    >>> normalize_question("  What is  the DOSE? ") == normalize_question("what is the dose?")
    True
    >>> normalize_question("Ｑ１") == "q1"
    True
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _select(n: int, limit: int | None, how: str, seed: int) -> list[int]:
    if limit is None or limit >= n:
        return list(range(n))
    if how == "random":
        return sorted(random.Random(seed).sample(range(n), limit))
    return list(range(limit))


def render_ids(tokenizer, sample) -> tuple[list[int], list[int], int]:
    """A sample's prompt and completion as token ids, and where its answer starts (a row cut
    before that keeps no answer at all)."""
    prompt = render_prompt(tokenizer, sample.messages)
    completion = render_completion(prompt, sample.cot, sample.response)
    prompt_ids = tokenize(tokenizer, prompt)
    if not has_template(tokenizer):
        prompt_ids = bos_prefix(tokenizer) + prompt_ids
    answer_start = len(prompt_ids) + len(tokenize(tokenizer, answer_prefix(completion, sample.response)))
    return prompt_ids, tokenize(tokenizer, completion), answer_start


def _cut(encoded: list[dict], cfg, report: DataReport, fates: dict) -> list[dict]:
    """Choose max_length and drop or truncate the rows above it, counting each."""
    lengths = [len(e["input_ids"]) for e in encoded]
    if not lengths:
        raise DataError(f"Data file {cfg.path}: no rows left to train on after selection.")
    longest = max(lengths)
    if cfg.max_length is not None:
        report.max_length, report.max_length_reason = cfg.max_length, "set by data.max_length"
    elif longest <= cfg.max_length_cap:
        report.max_length, report.max_length_reason = longest, "the longest row"
    else:
        report.max_length, report.max_length_reason = cfg.max_length_cap, "data.max_length_cap, as the longest row is longer"
    m = report.max_length
    report.length_median = statistics.median(lengths)
    report.length_p90 = sorted(lengths)[min(len(lengths) - 1, math.ceil(0.9 * len(lengths)) - 1)]
    report.length_max = longest
    kept = []
    for e, n in zip(encoded, lengths):
        fate = RowFate(e["row"], "", tokens=n, prompt_tokens=e["prompt_tokens"])
        fates[e["row"]] = fate
        if n <= m:
            kept.append(e)
            continue
        report.over_length += 1
        lost = e["answer_start"] >= m
        report.answer_lost += lost
        cut = f"{n} tokens > max_length {m}" + ("; the cut would remove the whole answer" if lost else "")
        if cfg.overflow == "drop":
            report.dropped += 1
            fate.fate, fate.note = "dropped", cut
            continue
        if all(x == IGNORE_INDEX for x in e["labels"][:m]):
            # Cut inside its prompt, a row has no label left; at batch size 1 its loss is 0/0 = NaN
            # (seen in issue 17's review), and it teaches nothing anyway: drop it and say so.
            report.dropped += 1
            report.prompt_cut += 1
            fate.fate, fate.note = "dropped", cut + "; the cut falls inside the prompt, so no token is left to learn"
            continue
        report.truncated += 1
        fate.note = "truncated: " + cut
        e["input_ids"], e["labels"] = e["input_ids"][:m], e["labels"][:m]
        kept.append(e)
    if not kept and report.prompt_cut:
        raise DataError(
            f"Data file {cfg.path}: every one of the {len(encoded)} selected rows is cut inside its prompt at max_length {m} "
            "(data.overflow=truncate), so no token of any row would be trained. Raise data.max_length (or data.max_length_cap); "
            "`thinktune data check --rows` lists every row's length."
        )
    return kept


def _split(kept: list[dict], fraction: float, min_rows: int, seed: int, source: str, report: DataReport):
    """Hold out whole groups of rows that ask the same (normalised) question, so the held-out
    loss measures unseen questions, not memorised ones (issue 11). Without duplicates this is a
    seeded shuffle of the rows, the first n_val held out."""
    if len(kept) < 2:
        raise DataError(f"Data file {source}: only {len(kept)} usable row(s); at least 2 are needed (one to train, one to hold out).")
    n_val = max(min_rows, round(fraction * len(kept))) if fraction > 0 else 0
    n_val = min(n_val, len(kept) // 2)
    groups: dict[str, list[int]] = {}
    for i, e in enumerate(kept):
        groups.setdefault(normalize_question(e["question"]), []).append(i)
    dup = [g for g in groups.values() if len(g) > 1]
    report.duplicate_groups, report.duplicate_rows = len(dup), sum(len(g) for g in dup)
    order = list(groups.values())
    random.Random(seed).shuffle(order)
    val_idx: set[int] = set()
    for g in order:  # whole groups, as long as they fit in the held-out share
        if len(val_idx) >= n_val:
            break
        if len(val_idx) + len(g) <= n_val:
            val_idx.update(g)
    if n_val and not val_idx:
        g = min(order, key=len)
        if len(g) > len(kept) // 2:
            raise DataError(
                f"Data file {source}: {len(g)} of {len(kept)} rows ask the same question, so no row can be held out without its question also being trained; add other questions or set data.val_fraction=0."
            )
        val_idx.update(g)
    train = [e for i, e in enumerate(kept) if i not in val_idx]
    val = [e for i, e in enumerate(kept) if i in val_idx]
    return train, val
