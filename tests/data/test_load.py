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


def test_deeply_nested_json_names_the_file_not_a_recursion_error(tmp_path):
    deep = "[" * 200_000 + "]" * 200_000
    p = tmp_path / "deep.json"
    p.write_text(deep)
    with pytest.raises(DataError, match=r"^Data file .*deep.json is nested too deeply to be a data file"):
        load_rows(str(p))
    lines = tmp_path / "deep.jsonl"
    lines.write_text(json.dumps(ROW) + "\n" + deep + "\n")
    with pytest.raises(DataError, match=r"^Data file .*deep.jsonl, line 2, is nested too deeply"):
        load_rows(str(lines))


@pytest.mark.parametrize(
    ("name", "text", "why"),
    [
        ("e.json", "", " (the file is empty)"),
        ("b.json", " \n", " (the file is empty)"),
        ("e.jsonl", "\n\n", " (the file is empty)"),
        ("e.csv", "", " (the file is empty)"),
        ("h.csv", "Question,Complex_CoT,Response\n", ""),
        ("l.json", "[]", ""),
    ],
)
def test_a_file_without_rows_is_named(tmp_path, name, text, why):
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(DataError) as e:
        load_rows(str(p))
    assert str(e.value) == f"Data file {p} holds no rows{why}; give a file with at least one row."


def test_csv_fields_longer_than_csvs_default_limit_are_read(tmp_path):
    p = tmp_path / "long.csv"
    cot = "step " * 40_000  # 200,000 characters: csv's default limit is 131,072
    p.write_text(f"Question,Complex_CoT,Response\nQ?,{cot},A.\n")
    assert load_rows(str(p)) == [{"Question": "Q?", "Complex_CoT": cot, "Response": "A."}]


def test_unreadable_csv_names_the_line(tmp_path, monkeypatch):
    import csv

    from thinktune.data import load

    monkeypatch.setattr(load, "CSV_FIELD_LIMIT", 20)  # a field over the limit is one csv.Error csv raises
    p = tmp_path / "bad.csv"
    p.write_text("Question,Complex_CoT,Response\nQ?,r,a\nQ?,a reasoning that is too long,a\n")
    try:
        with pytest.raises(DataError, match=r"^Data file .*bad.csv, line 3: not readable as CSV \(field larger than field limit \(20\)\)"):
            load_rows(str(p))
    finally:
        csv.field_size_limit(131072)  # csv's limit is process-wide: other tests get the default back
