"""Benchmark loading and prompts: the real files, exact prompts, selection, and every bad input."""

import json
import random

import pytest

from conftest import ROOT, SHARED, missing
from thinktune.errors import DataError, UserError
from thinktune.evaluate.bench import (
    ANSWER_SUFFIX,
    CMB_ANSWER_SUFFIX,
    CMB_PROMPT,
    CMB_PROMPT_NO_EXAM,
    ENGLISH_PROMPT,
    KNOWN_UNSCORABLE,
    Item,
    load_bench,
    parse_cmb_options,
    render_question,
)
from thinktune.evaluate.extract import extract_choice

EVAL = SHARED / "eval"
CMB_FILE = "cmb_single_choice_905.jsonl"


@pytest.fixture(scope="module")
def eval_dir():
    if not EVAL.is_dir():
        missing(EVAL)
    return EVAL


def cmb_raw_rows(eval_dir) -> list[dict]:
    lines = (eval_dir / CMB_FILE).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.mark.parametrize("name,count,fmt", [("medqa", 1273, "mcq"), ("medmcqa", 4183, "mcq"), ("pubmedqa", 1000, "mcq"), ("cmb", 904, "cmb")])
def test_real_files_load_with_exact_counts(eval_dir, name, count, fmt):
    items, got_fmt = load_bench(name, data_dir=eval_dir)
    assert (len(items), got_fmt) == (count, fmt)
    assert all(item.gold in item.options for item in items)
    assert len({item.id for item in items}) == count


def test_cmb_file_has_905_rows_and_one_is_left_out(eval_dir):
    rows = cmb_raw_rows(eval_dir)
    assert len(rows) == 905
    items, _ = load_bench("cmb", data_dir=eval_dir)
    left_out = {r["id"] for r in rows} - {i.id for i in items}
    assert left_out == set(KNOWN_UNSCORABLE[CMB_FILE]) == {"hf_cmb_000098"}
    bad = next(r for r in rows if r["id"] == "hf_cmb_000098")
    assert (sorted(parse_cmb_options(bad["prompt"])), bad["gt_answer"]) == (["A", "B", "C", "D"], "E")


def test_ids_are_row_numbers_or_own_ids(eval_dir):
    medqa, _ = load_bench("medqa", data_dir=eval_dir)
    assert [i.id for i in medqa[:3]] == ["1", "2", "3"] and medqa[-1].id == "1273"
    cmb, _ = load_bench("cmb", data_dir=eval_dir)
    assert [i.id for i in cmb[:5]] == ["hf_cmb_000000", "hf_cmb_000001", "hf_cmb_000002", "hf_cmb_000003", "hf_cmb_000005"]


def test_first_medqa_prompt_is_exact(eval_dir):
    raw = json.loads((eval_dir / "medqa_usmle_test.json").read_text(encoding="utf-8"))[0]
    items, fmt = load_bench("medqa", data_dir=eval_dir, limit=1)
    options = "\n".join(f"{k}. {raw['options'][k]}" for k in ("A", "B", "C", "D"))
    expected = "Please answer the following multiple-choice question:\n" + raw["question"] + "\n" + options
    assert render_question(items[0], fmt) == expected
    assert render_question(items[0], fmt, ask_answer_line=True) == expected + (
        "\nEnd your response with 'The answer is X.', where X is the letter of the correct option."
    )
    assert (items[0].gold, items[0].meta) == (raw["answer_idx"], {"answer": raw["answer"]})


def test_pubmedqa_options(eval_dir):
    items, _ = load_bench("pubmedqa", data_dir=eval_dir)
    assert all(i.options == {"A": "yes", "B": "no", "C": "maybe"} for i in items)


def test_cmb_options_parsed_from_real_rows(eval_dir):
    items, fmt = load_bench("cmb", data_dir=eval_dir, limit=2)
    assert items[0].options == {
        "A": "病案资料的载体由纸张转化为缩影胶片",
        "B": "病案资料的载体由纸张转化为磁盘或光盘",
        "C": "病案资料的载体由纸张转化为硬盘",
        "D": "病案资料的载体部分由纸张转化为电子方式",
        "E": "以上均是",
    }
    assert (items[0].gold, items[1].gold) == ("E", "B")
    assert items[1].options == {"A": "芍药汤", "B": "肥儿丸", "C": "乌梅丸", "D": "白头翁汤"}
    assert items[1].question == "治疗虫积腹痛，消化不良证，宜首选\nA. 芍药汤\nB. 肥儿丸\nC. 乌梅丸\nD. 白头翁汤"
    assert items[1].meta["question_type"] == "单项选择题"
    # Extraction by option text works on the parsed options.
    assert extract_choice("宜首选肥儿丸。", items[1].options) == ("B", "option_text")


def test_every_cmb_gold_is_among_parsed_options(eval_dir):
    rows = cmb_raw_rows(eval_dir)
    missing = [r["id"] for r in rows if r["gt_answer"] not in parse_cmb_options(r["prompt"])]
    assert missing == ["hf_cmb_000098"]  # its options stop at D; the source lost option E
    counts = sorted({len(parse_cmb_options(r["prompt"])) for r in rows})
    assert counts == [4, 5, 6]


def test_cmb_prompt_header(eval_dir):
    items, fmt = load_bench("cmb", data_dir=eval_dir, limit=2)
    body = items[1].question
    expected = "以下是中国医学考试的一道单项选择题，请分析每个选项，并最后给出答案。\n" + body
    assert render_question(items[1], fmt) == expected
    assert render_question(items[1], fmt, ask_answer_line=True) == expected + CMB_ANSWER_SUFFIX
    # None of the shipped prompts carries the header already.
    assert not any(r["prompt"].startswith("以下是中国") for r in cmb_raw_rows(eval_dir))


def test_cmb_prompt_with_exam_meta_and_header_not_doubled():
    options = {"A": "甲", "B": "乙"}
    item = Item("x", "问题\nA. 甲\nB. 乙", options, "A", {"exam_type": "医师考试", "exam_class": "执业医师", "question_type": "单项选择题"})
    assert render_question(item, "cmb") == ("以下是中国医师考试中执业医师考试的一道单项选择题，请分析每个选项，并最后给出答案。\n问题\nA. 甲\nB. 乙")
    headed = Item(
        "y",
        "以下是中国医师考试中执业医师考试的一道单项选择题，请分析每个选项，并最后给出答案。\n问题\nA. 甲\nB. 乙",
        options,
        "A",
        {"exam_type": "医师考试", "exam_class": "执业医师"},
    )
    assert render_question(headed, "cmb") == headed.question
    assert CMB_PROMPT.startswith("以下是中国{exam_type}") and CMB_PROMPT_NO_EXAM.endswith("{question}")
    with pytest.raises(ValueError):
        render_question(item, "other")


def test_prompt_constants_are_the_documented_text():
    assert ENGLISH_PROMPT == "Please answer the following multiple-choice question:\n{question}\n{options}"
    assert ANSWER_SUFFIX == "\nEnd your response with 'The answer is X.', where X is the letter of the correct option."


def test_limit_and_seed(eval_dir):
    full, _ = load_bench("medmcqa", data_dir=eval_dir)
    first, _ = load_bench("medmcqa", data_dir=eval_dir, limit=5)
    assert [i.id for i in first] == ["1", "2", "3", "4", "5"]
    sample, _ = load_bench("medmcqa", data_dir=eval_dir, limit=5, seed=7)
    expected = sorted(random.Random(7).sample(range(len(full)), 5))
    assert [i.id for i in sample] == [full[k].id for k in expected]
    again, _ = load_bench("medmcqa", data_dir=eval_dir, limit=5, seed=7)
    other, _ = load_bench("medmcqa", data_dir=eval_dir, limit=5, seed=8)
    assert [i.id for i in again] == [i.id for i in sample] != [i.id for i in other]
    assert len(load_bench("pubmedqa", data_dir=eval_dir, limit=5000)[0]) == 1000
    assert len(load_bench("pubmedqa", data_dir=eval_dir, seed=3)[0]) == 1000
    with pytest.raises(UserError, match="limit"):
        load_bench("pubmedqa", data_dir=eval_dir, limit=0)


def test_data_dir_from_env_and_from_cwd(eval_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("THINKTUNE_EVAL_DIR", str(eval_dir))
    monkeypatch.chdir(tmp_path)
    assert len(load_bench("pubmedqa")[0]) == 1000
    monkeypatch.delenv("THINKTUNE_EVAL_DIR")
    with pytest.raises(DataError, match="pubmedqa_test.json"):
        load_bench("pubmedqa")  # tmp_path/../shared/data/eval does not exist
    if (ROOT.parent / "shared" / "data" / "eval") == eval_dir:
        monkeypatch.chdir(ROOT)
        assert len(load_bench("pubmedqa")[0]) == 1000


def test_path_loads_either_shape(eval_dir, tmp_path):
    rows = [{"question": "Q?", "options": {"A": "x", "B": "y"}, "answer_idx": "B", "id": 42}]
    (tmp_path / "mine.txt").write_text(json.dumps(rows))
    items, fmt = load_bench(str(tmp_path / "mine.txt"))
    assert (fmt, items) == ("mcq", [Item("42", "Q?", {"A": "x", "B": "y"}, "B", {})])
    items, fmt = load_bench(str(eval_dir / CMB_FILE), limit=1)
    assert (fmt, items[0].id) == ("cmb", "hf_cmb_000000")


# ---- bad input: one DataError naming the file, the rows and the field --------------------------


def write_json(tmp_path, rows, name="bad.json"):
    path = tmp_path / name
    path.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    return path


def write_jsonl(tmp_path, lines, name="bad.jsonl"):
    path = tmp_path / name
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8")
    return path


def error_of(path, **kw) -> str:
    with pytest.raises(DataError) as e:
        load_bench(str(path), **kw)
    message = str(e.value)
    assert "\n" not in message  # one paragraph
    return message


def test_missing_named_file_says_where_and_which_names(tmp_path):
    with pytest.raises(DataError) as e:
        load_bench("medqa", data_dir=tmp_path)
    message = str(e.value)
    assert str(tmp_path / "medqa_usmle_test.json") in message
    assert "THINKTUNE_EVAL_DIR" in message and "medqa, medmcqa, pubmedqa, cmb" in message


def test_missing_path_lists_known_names(tmp_path):
    message = error_of(tmp_path / "nope.json")
    assert "nope.json" in message and "does not exist" in message and "medqa, medmcqa, pubmedqa, cmb" in message


def test_invalid_json_names_the_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[\n{"question": "Q", "options": {"A": "x", "B": "y"},}\n]')
    message = error_of(path)
    assert "broken.json" in message and "not valid JSON" in message and "line 2" in message


def test_invalid_jsonl_names_every_line(tmp_path):
    good = {"id": "a", "prompt": "Q\nA. x\nB. y", "gt_answer": "A", "meta": {}}
    path = write_jsonl(tmp_path, [good, "{not json", {**good, "id": "b"}, "[1, 2", ""])
    message = error_of(path)
    assert "bad.jsonl" in message and "the line is not valid JSON in 2 lines (line 2, 4)" in message


def test_not_a_list_and_empty_list(tmp_path):
    assert "got a dict" in error_of(write_json(tmp_path, {"question": "Q"}, "obj.json"))
    assert "got an empty list" in error_of(write_json(tmp_path, [], "empty.json"))


def test_every_mcq_row_problem_is_reported_at_once(tmp_path):
    ok = {"question": "Q?", "options": {"A": "x", "B": "y", "C": "z"}, "answer_idx": "A"}
    rows = [
        ok,
        {k: v for k, v in ok.items() if k != "question"},  # row 2
        {k: v for k, v in ok.items() if k != "options"},  # row 3
        {k: v for k, v in ok.items() if k != "answer_idx"},  # row 4
        {**ok, "answer_idx": "D"},  # row 5
        {**ok, "options": {"A": "x"}},  # row 6
        {**ok, "options": {chr(65 + i): str(i) for i in range(11)}},  # row 7
        {**ok, "options": {"A": "x", "B": 3}},  # row 8
        "just a string",  # row 9
        {**ok, "answer_idx": "E"},  # row 10
        {**ok, "options": {"A": "x", "b": "y"}},  # row 11
    ]
    message = error_of(write_json(tmp_path, rows))
    assert message.startswith(f"Benchmark file {tmp_path / 'bad.json'}: 10 of 11 rows cannot be used")
    for part in [
        "field 'question' is missing in 1 row (row 2)",
        "field 'options' is missing in 1 row (row 3)",
        "field 'answer_idx' is missing in 1 row (row 4)",
        "field 'answer_idx' is not one of the row's option letters in 2 rows (row 5, 10)",
        "field 'options' has fewer than 2 options in 1 row (row 6)",
        "field 'options' has more than 10 options in 1 row (row 7)",
        "field 'options' has an option text that is not a string in 1 row (row 8)",
        "the row is not a JSON object in 1 row (row 9)",
        "field 'options' has a key that is not a single capital letter in 1 row (row 11)",
        "Rows are counted from 1",
    ]:
        assert part in message, part


def test_many_bad_rows_show_the_first_few(tmp_path):
    rows = [{"options": {"A": "x", "B": "y"}, "answer_idx": "A"} for _ in range(8)]
    message = error_of(write_json(tmp_path, rows))
    assert "field 'question' is missing in 8 rows (row 1, 2, 3, 4, 5, ...)" in message


def test_duplicate_ids(tmp_path):
    row = {"id": "q1", "question": "Q?", "options": {"A": "x", "B": "y"}, "answer_idx": "A"}
    message = error_of(write_json(tmp_path, [row, {**row, "question": "Q2?"}, row]))
    assert "field 'id' repeats an earlier row's id in 2 rows (row 2, 3)" in message


def test_every_cmb_row_problem_is_reported_at_once(tmp_path):
    ok = {"id": "a", "prompt": "问题\nA. 甲\nB. 乙", "gt_answer": "A", "meta": {"question_type": "单项选择题"}}
    lines = [
        ok,
        {"id": "b", "gt_answer": "A"},  # line 2
        {"id": "c", "prompt": "问题\nA. 甲\nB. 乙"},  # line 3
        {**ok, "id": "d", "gt_answer": "C"},  # line 4
        {**ok, "id": "e", "prompt": "问题没有选项"},  # line 5
        {**ok, "id": "f", "prompt": "问题\nB. 乙\nC. 丙"},  # line 6: does not start at A
        {**ok, "id": "g", "gt_answer": "AB"},  # line 7
        {**ok, "id": "a"},  # line 8: repeats line 1's id
        [1, 2],  # line 9
    ]
    message = error_of(write_jsonl(tmp_path, lines))
    assert message.startswith(f"Benchmark file {tmp_path / 'bad.jsonl'}: 8 of 9 lines cannot be used")
    for part in [
        "field 'prompt' is missing in 1 line (line 2)",
        "field 'gt_answer' is missing in 1 line (line 3)",
        "field 'gt_answer' is not one of the option letters parsed from 'prompt' in 1 line (line 4)",
        "field 'prompt' does not end with 2 or more option lines 'A. text' in 2 lines (line 5, 6)",
        "field 'gt_answer' is not a single capital letter in 1 line (line 7)",
        "field 'id' repeats an earlier row's id in 1 line (line 8)",
        "the line is not a JSON object in 1 line (line 9)",
        "Lines are counted from 1",
    ]:
        assert part in message, part


def test_cmb_too_many_options(tmp_path):
    prompt = "问题\n" + "\n".join(f"{chr(65 + i)}. 选项{i}" for i in range(11))
    message = error_of(write_jsonl(tmp_path, [{"id": "a", "prompt": prompt, "gt_answer": "A"}]))
    assert "field 'prompt' has more than 10 option lines in 1 line (line 1)" in message


def test_known_unscorable_row_is_left_out_only_in_its_file(eval_dir, tmp_path):
    bad = next(r for r in cmb_raw_rows(eval_dir) if r["id"] == "hf_cmb_000098")
    good = {"id": "ok", "prompt": "问题\nA. 甲\nB. 乙", "gt_answer": "B", "meta": {}}
    message = error_of(write_jsonl(tmp_path, [good, bad], "copy.jsonl"))
    assert "copy.jsonl" in message and "'gt_answer' is not one of the option letters" in message and "(line 2)" in message
    (tmp_path / "shipped").mkdir()
    items, _ = load_bench(str(write_jsonl(tmp_path / "shipped", [good, bad], CMB_FILE)))
    assert [i.id for i in items] == ["ok"]


def test_parse_cmb_options_edge_cases():
    assert parse_cmb_options("问题\nA. 甲\nB. 乙\n") == {"A": "甲", "B": "乙"}
    assert parse_cmb_options("A. 甲\nB. 乙") == {}  # no question before the options
    assert parse_cmb_options("问题\nA. 甲\nC. 丙") == {}  # letters must run from A in order
    assert parse_cmb_options("问题\nA．甲\nB、乙") == {"A": "甲", "B": "乙"}
