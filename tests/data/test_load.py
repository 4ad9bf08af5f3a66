"""Loading and validation: every format, and one clear error naming file, rows and field."""

import json

import pytest

from thinktune.config import DataConfig
from thinktune.data.load import load_rows
from thinktune.errors import DataError

ROW = {"Question": "Q?", "Complex_CoT": "R.", "Response": "A."}


def test_formats_read_the_same_rows(tmp_path):
    rows = [ROW, {**ROW, "Question": "Q2?"}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    import csv

    with (tmp_path / "a.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(ROW))
        w.writeheader()
        w.writerows(rows)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    for ext in ("json", "jsonl", "csv", "parquet"):
        assert load_rows(str(tmp_path / f"a.{ext}")) == rows, ext


def test_missing_file():
    with pytest.raises(DataError, match="nope.json does not exist"):
        load_rows("nope.json")


def test_bad_jsonl_names_the_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text(json.dumps(ROW) + "\n" + json.dumps(ROW) + "\n{oops\n")
    with pytest.raises(DataError, match=r"bad.jsonl, line 3: not valid JSON"):
        load_rows(str(p))


def test_bad_json_names_the_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('[\n{"Question": "a"},\n{oops}\n]')
    with pytest.raises(DataError, match=r"bad.json is not valid JSON: .* at line 3"):
        load_rows(str(p))


def test_random_sample_reports_source_row_numbers(tiny_tokenizer):
    import random

    from thinktune.data.pipeline import prepare

    rows = [dict(ROW, Question=f"q{i}") for i in range(50)]
    chosen = sorted(random.Random(1).sample(range(50), 25))  # what data.sample=random picks with seed 1
    bad = chosen[-1]
    assert bad + 1 != 25  # its source row number differs from its place in the selection
    rows[bad]["Response"] = ""
    cfg = DataConfig(path="d.json", limit=25, sample="random")
    with pytest.raises(DataError, match=rf"field 'Response' empty in 1 row \(row {bad + 1}\)"):
        prepare(cfg, tiny_tokenizer, seed=1, rows=rows)


def test_non_utf8_file(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("Question,Complex_CoT,Response\ncaf\xe9,r,a\n".encode("latin-1"))
    with pytest.raises(DataError, match="is not UTF-8 text"):
        load_rows(str(p))
