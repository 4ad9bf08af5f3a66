"""Length planning (no silent truncation), the held-out split, and every row's fate."""

import doctest

import pytest

from thinktune.config import DataConfig
from thinktune.data import pipeline
from thinktune.data.encode import IGNORE_INDEX
from thinktune.data.pipeline import prepare, refuse_answerless, report_lines
from thinktune.errors import DataError


def test_docstring_examples_run():
    result = doctest.testmod(pipeline)
    assert result.attempted > 0 and result.failed == 0


def _full_lengths(tok, rows):
    cfg = DataConfig(path="en", limit=None, val_fraction=0.0, val_min_rows=0, max_length_cap=100000)
    p = prepare(cfg, tok, rows=rows)
    return {e["row"]: e for e in p.train}


def test_auto_max_length_covers_the_longest_row(r1_tokenizer, shared_en):
    full = _full_lengths(r1_tokenizer, shared_en)
    cfg = DataConfig(path="en", limit=None)
    p = prepare(cfg, r1_tokenizer, rows=shared_en)
    assert p.report.max_length == max(len(e["input_ids"]) for e in full.values())
    assert p.report.over_length == p.report.dropped == p.report.truncated == 0
    assert p.report.train_rows + p.report.val_rows == len(shared_en)


def test_drop_at_512_counts_every_row(r1_tokenizer, shared_en):
    """Defect 5: the tutorial's 512 cuts most English rows; thinktune drops and counts them."""
    full = _full_lengths(r1_tokenizer, shared_en)
    over = {r for r, e in full.items() if len(e["input_ids"]) > 512}
    lost = {r for r in over if full[r]["answer_start"] >= 512}
    assert len(over) > 100  # measured: most English rows are longer than 512 tokens
    p = prepare(DataConfig(path="en", limit=None, max_length=512), r1_tokenizer, rows=shared_en)
    r = p.report
    assert (r.over_length, r.dropped, r.truncated, r.answer_lost) == (len(over), len(over), 0, len(lost))
    kept = {e["row"] for e in p.train + p.val}
    assert kept == set(full) - over
    fates = {f.row: f.fate for f in r.rows}
    assert {row for row, fate in fates.items() if fate == "dropped"} == over
    assert all(len(e["input_ids"]) <= 512 for e in p.train + p.val)


def test_truncate_when_asked(r1_tokenizer, shared_en):
    full = _full_lengths(r1_tokenizer, shared_en)
    over = {r for r, e in full.items() if len(e["input_ids"]) > 512}
    p = prepare(DataConfig(path="en", limit=None, max_length=512, overflow="truncate"), r1_tokenizer, rows=shared_en)
    assert p.report.truncated == len(over) and p.report.dropped == 0
    for e in p.train + p.val:
        if e["row"] in over:
            assert len(e["input_ids"]) == 512 and e["input_ids"] == full[e["row"]]["input_ids"][:512]
            assert e["labels"] == full[e["row"]]["labels"][:512]
    notes = [f.note for f in p.report.rows if f.row in over]
    assert all(n.startswith("truncated:") for n in notes)


def test_limit_sample_and_split(r1_tokenizer, shared_en):
    p = prepare(DataConfig(path="en", limit=40, val_fraction=0.05, val_min_rows=4), r1_tokenizer, rows=shared_en)
    r = p.report
    assert (r.rows_read, r.rows_selected, r.train_rows, r.val_rows) == (158, 40, 36, 4)
    assert {e["row"] for e in p.train + p.val} == set(range(1, 41))
    assert not {e["row"] for e in p.train} & {e["row"] for e in p.val}
    assert sum(f.fate == "not selected" for f in r.rows) == 118 and len(r.rows) == 158
    assert r.trained_tokens == sum(sum(1 for x in e["labels"] if x != IGNORE_INDEX) for e in p.train)
    q = prepare(DataConfig(path="en", limit=40, sample="random"), r1_tokenizer, rows=shared_en)
    rows_q = {e["row"] for e in q.train + q.val}
    assert len(rows_q) == 40 and rows_q != set(range(1, 41))
    again = prepare(DataConfig(path="en", limit=40, sample="random"), r1_tokenizer, rows=shared_en)
    assert [e["row"] for e in again.val] == [e["row"] for e in q.val]


def test_rows_that_ask_the_same_question_stay_on_one_side(r1_tokenizer, shared_en):
    """Issue 11: six rows asking one question (spelt with other case and spacing) never split
    between train and held-out, whatever the seed; without duplicates the split is unchanged."""
    q = shared_en[0]["Question"]
    same = [{**shared_en[i], "Question": v} for i, v in enumerate([q, q.upper(), "  " + q, q.replace(" ", "  "), q + "\n", q.lower()])]
    rows = same + shared_en[10:24]
    cfg = DataConfig(path="dups", limit=None, val_fraction=0.5, val_min_rows=2, max_length_cap=100000)
    sides = set()
    for seed in range(12):
        p = prepare(cfg, r1_tokenizer, seed=seed, rows=rows)
        fates = {f.row: f.fate for f in p.report.rows}
        assert len({fates[r] for r in range(1, 7)}) == 1, seed  # all six on one side
        assert (p.report.duplicate_groups, p.report.duplicate_rows) == (1, 6)
        sides.add(fates[1])
        assert 1 <= p.report.val_rows <= 10  # half of 20 rows at most, whole groups only
    assert sides == {"train", "val"}  # the group is held out under some seeds, trained under others
    plain = prepare(cfg, r1_tokenizer, seed=3, rows=shared_en[10:30])
    assert plain.report.duplicate_groups == 0 and [e["row"] for e in plain.val] == [
        e["row"] for e in prepare(cfg, r1_tokenizer, seed=3, rows=shared_en[10:30]).val
    ]


def test_rows_that_lose_their_answer_warn_and_all_lost_is_refused(r1_tokenizer, shared_en):
    """Issue 11: truncation that removes every trained answer is an error (exit 2 via DataError);
    more than a quarter lost is a warning, recorded in the report (and so in summary.json)."""
    full = _full_lengths(r1_tokenizer, shared_en[:12])
    starts = sorted(e["answer_start"] for e in full.values())
    cut = DataConfig(path="x", limit=None, overflow="truncate", val_fraction=0.0, val_min_rows=0, max_length=starts[0])
    p = prepare(cut, r1_tokenizer, rows=shared_en[:12])
    assert p.report.train_answer_lost == p.report.train_rows == 12
    assert any("12 of 12 training rows lose their whole answer" in w for w in p.report.warnings)
    with pytest.raises(DataError, match=r"x: every one of the 12 training rows loses its whole answer when cut to max_length"):
        refuse_answerless(p.report)
    # cut between answers: the rows whose answer starts at or after the cut lose it, the rest keep some
    m = starts[5] + 1
    some = prepare(DataConfig(**{**cut.__dict__, "max_length": m}), r1_tokenizer, rows=shared_en[:12])
    lost = sum(e["answer_start"] >= m for e in full.values())
    assert some.report.train_answer_lost == lost == 6
    assert [w for w in some.report.warnings if "lose their whole answer" in w] == [
        f"6 of 12 training rows lose their whole answer to max_length {m} (data.overflow=truncate): they teach the model to think and never answer; raise data.max_length or use data.overflow=drop."
    ]
    refuse_answerless(some.report)  # some answers remain: a warning, not an error
    few = prepare(DataConfig(**{**cut.__dict__, "max_length": starts[9] + 1}), r1_tokenizer, rows=shared_en[:12])
    assert few.report.train_answer_lost == 2 and not any("lose their whole answer" in w for w in few.report.warnings)  # 2 of 12: under a quarter


def test_a_lone_surrogate_is_a_data_error_before_the_tokenizer_sees_it(r1_tokenizer, shared_en):
    """The tokenizer raises a TypeError on a lone surrogate; validation names row and field first."""
    rows = [dict(r) for r in shared_en[:6]]
    rows[2]["Question"] = "bad \ud800 here"
    with pytest.raises(
        DataError,
        match=r"^Data file s.json: 1 of 6 rows cannot be used: field 'Question' holds an invalid character \(a lone UTF-16 surrogate, \\ud800: .* in 1 row \(row 3\)",
    ):
        prepare(DataConfig(path="s.json", limit=None), r1_tokenizer, rows=rows)


def test_control_characters_are_a_warning_in_the_report(r1_tokenizer, shared_en):
    rows = [dict(r) for r in shared_en[:6]]
    rows[1]["Response"] += " ok\x00 \x07 bell"
    p = prepare(DataConfig(path="c.json", limit=None), r1_tokenizer, rows=rows)
    assert p.report.train_rows + p.report.val_rows == 6  # kept
    warning = "1 row holds control characters (NUL, BEL) in 'Response': row 2; they are kept as they are (remove them if the model should not learn them)."
    assert p.report.warnings == [warning] and pipeline.report_lines(p.report)[-1] == ("warning", warning)


def test_rows_cut_inside_their_prompt_are_dropped_and_counted(r1_tokenizer, shared_en):
    """Issue 13: max_length 8 with overflow=truncate trained on "0 labelled tokens"; and a row cut
    inside its prompt has no label, so at batch size 1 its loss is 0/0 = NaN. Such rows are dropped
    and counted; when that is every row, the run is refused with the fix."""
    full = _full_lengths(r1_tokenizer, shared_en[:12])
    with pytest.raises(DataError, match=r"x: every one of the 12 selected rows is cut inside its prompt at max_length 8 \(data.overflow=truncate\)"):
        prepare(DataConfig(path="x", limit=None, overflow="truncate", val_fraction=0.25, val_min_rows=3, max_length=8), r1_tokenizer, rows=shared_en[:12])
    prompts = sorted(e["prompt_tokens"] for e in full.values())
    m = prompts[5]  # rows whose prompt has m tokens or more keep no label (the first label is at position prompt_tokens)
    inside = {r for r, e in full.items() if e["prompt_tokens"] >= m}
    cfg = DataConfig(path="x", limit=None, overflow="truncate", val_fraction=0.25, val_min_rows=3, max_length=m)
    p = prepare(cfg, r1_tokenizer, rows=shared_en[:12])
    assert p.report.prompt_cut == p.report.dropped == len(inside) and 0 < len(inside) < 12
    assert {f.row for f in p.report.rows if f.fate == "dropped"} == inside
    assert all("the cut falls inside the prompt" in f.note for f in p.report.rows if f.fate == "dropped")
    kept = 12 - len(inside)
    assert p.report.train_rows + p.report.val_rows == p.report.truncated == kept
    assert all(any(x != IGNORE_INDEX for x in e["labels"]) for e in p.train + p.val)
    assert f"({len(inside)} dropped ({len(inside)} cut inside their prompt), {kept} truncated" in report_lines(p.report)[0][1]
