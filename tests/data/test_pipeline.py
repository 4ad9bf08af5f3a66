"""Length planning (no silent truncation), the held-out split, and every row's fate."""

from thinktune.config import DataConfig
from thinktune.data.encode import IGNORE_INDEX
from thinktune.data.pipeline import prepare


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
