"""validate.py: raw rows to Samples; every bad row in one DataError naming file, rows and field."""

import json

import pytest

from thinktune.config import DataConfig
from thinktune.data.validate import Sample, ValidationReport, invalid_text, split_reasoning, turns_problem, validate_columns, validate_messages
from thinktune.errors import DataError

ROW = {"Question": " Q? ", "Complex_CoT": "\nR.\n", "Response": " A. "}


def error(fn, rows, cfg=None, source="data.json", numbers=None) -> str:
    with pytest.raises(DataError) as e:
        fn(rows, cfg or DataConfig(), source, numbers)
    msg = str(e.value)
    assert "\n" not in msg and msg.endswith("Nothing was written.")  # one paragraph
    return msg


def test_good_rows_become_samples_with_stripped_text():
    samples, report = validate_columns([ROW, {**ROW, "Question": "Q2?"}], DataConfig(), "d.json")
    assert samples == [Sample(1, [{"role": "user", "content": "Q?"}], "R.", "A."), Sample(2, [{"role": "user", "content": "Q2?"}], "R.", "A.")]
    assert report == ValidationReport(2, []) and report.warnings() == []


def test_system_prompt_and_other_column_names():
    cfg = DataConfig(question_field="q", cot_field="why", response_field="a", system_prompt="Be careful.")
    samples, _ = validate_columns([{"q": "Q", "why": "W", "a": "A", "extra": 1}], cfg, "d.json")
    assert samples == [Sample(1, [{"role": "system", "content": "Be careful."}, {"role": "user", "content": "Q"}], "W", "A")]


def test_bad_rows_name_the_file_the_rows_and_the_field():
    rows = [ROW, {"Question": "Q"}, {**ROW, "Response": "  "}, {**ROW, "Complex_CoT": 7}, {**ROW, "Question": None}, {**ROW, "Response": ["A"]}]
    msg = error(validate_columns, rows, source="/data/med.json")
    assert msg.startswith("Data file /data/med.json: 5 of 6 rows cannot be used: ")
    assert "field 'Complex_CoT' missing in 1 row (row 2)" in msg
    assert "field 'Response' missing in 1 row (row 2)" in msg
    assert "field 'Response' empty in 1 row (row 3)" in msg
    assert "field 'Complex_CoT' not a string (e.g. int) in 1 row (row 4)" in msg
    assert "field 'Question' null in 1 row (row 5)" in msg
    assert "field 'Response' not a string (e.g. list) in 1 row (row 6)" in msg
    assert "Every row needs non-empty text in 'Question', 'Complex_CoT', 'Response'" in msg


def test_many_bad_rows_are_listed_five_then_dots_and_counted():
    rows = [ROW] + [{**ROW, "Response": ""} for _ in range(7)]
    msg = error(validate_columns, rows)
    assert "data.json: 7 of 8 rows cannot be used: field 'Response' empty in 7 rows (row 2, 3, 4, 5, 6, ...)." in msg


def test_row_numbers_are_the_sources_numbers():
    rows = [ROW, {**ROW, "Question": ""}]
    msg = error(validate_columns, rows, numbers=[10, 42])
    assert "1 of 2 rows cannot be used: field 'Question' empty in 1 row (row 42)" in msg
    samples, _ = validate_columns([ROW, ROW], DataConfig(), "d.json", numbers=[7, 9])
    assert [s.row for s in samples] == [7, 9]


def test_duplicates_are_reported_with_the_first_row():
    rows = [ROW, {**ROW, "Question": "other"}, {**ROW, "Question": "Q?"}, {**ROW, "Question": "other "}, ROW]
    samples, report = validate_columns(rows, DataConfig(), "d.json")
    assert len(samples) == 5
    assert report.rows == 5 and report.duplicates == [(3, 1), (4, 2), (5, 1)]  # compared after stripping
    assert report.warnings() == ["3 rows repeat an earlier question (row 3 repeats row 1, row 4 repeats row 2, row 5 repeats row 1); they are kept."]


def msg_row(question, assistant, **extra):
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": assistant, **extra}]}


def test_messages_rows():
    rows = [
        msg_row("Q1?", "<think>\n R1. \n</think>\n\n A1. "),
        msg_row("Q2?", "A2.", reasoning_content="R2."),
        msg_row("Q3?", "A3.", reasoning=" R3. "),
        {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q4?"}, {"role": "assistant", "content": "<think>R4</think>A4"}]},
    ]
    samples, report = validate_messages(rows, DataConfig(format="messages"), "chat.jsonl")
    assert [(s.row, s.cot, s.response) for s in samples] == [(1, "R1.", "A1."), (2, "R2.", "A2."), (3, "R3.", "A3."), (4, "R4", "A4")]
    assert samples[3].messages == [{"role": "system", "content": "S"}, {"role": "user", "content": "Q4?"}]
    assert report.rows == 4 and report.duplicates == []


def test_messages_system_prompt_is_added_only_where_there_is_none():
    cfg = DataConfig(format="messages", system_prompt="Think.")
    rows = [
        msg_row("Q1?", "<think>r</think>a"),
        {"messages": [{"role": "system", "content": "Own."}, {"role": "user", "content": "Q2?"}, {"role": "assistant", "content": "<think>r</think>a"}]},
    ]
    samples, _ = validate_messages(rows, cfg, "chat.jsonl")
    assert samples[0].messages == [{"role": "system", "content": "Think."}, {"role": "user", "content": "Q1?"}]
    assert samples[1].messages == [{"role": "system", "content": "Own."}, {"role": "user", "content": "Q2?"}]


def test_bad_messages_rows_name_the_file_the_rows_and_the_field():
    rows = [
        msg_row("Q1?", "<think>r</think>a"),
        {"other": 1},
        {"messages": []},
        {"messages": [{"role": "user", "content": 3}, {"role": "assistant", "content": "a"}]},
        {"messages": [{"role": "assistant", "content": "<think>r</think>a"}, {"role": "user", "content": "Q"}]},
        msg_row("Q6?", "no reasoning here"),
        msg_row("Q7?", "<think>only reasoning</think>  "),
    ]
    msg = error(validate_messages, rows, DataConfig(format="messages"), source="chat.jsonl")
    assert msg.startswith("Data file chat.jsonl: 6 of 7 rows cannot be used: ")
    assert "field 'messages' missing in 1 row (row 2)" in msg
    assert "field 'messages' not a non-empty list of turns in 1 row (row 3)" in msg
    assert "field 'messages' turn 1 has a non-text 'content' (int) in 1 row (row 4)" in msg
    assert "field 'messages' does not end with a user turn followed by an assistant turn in 1 row (row 5)" in msg
    assert "field 'messages' last assistant turn has no <think> reasoning or no answer in 2 rows (row 6, 7)" in msg
    assert "Every row needs non-empty text in 'messages'" in msg


def test_split_reasoning():
    assert split_reasoning({"content": "<think>\nr\n</think>\n\na"}) == ("r", "a")
    assert split_reasoning({"content": "r</think>a</think>b"}) == ("r", "a</think>b")  # split at the first close
    assert split_reasoning({"content": " just an answer "}) == ("", "just an answer")
    assert split_reasoning({"content": "a", "reasoning_content": "  "}) == ("", "a")  # blank reasoning key: ignored
    assert split_reasoning({"content": "<think>x</think>a", "reasoning": "key wins"}) == ("key wins", "<think>x</think>a")


# From test_load.py (issue 12: each module's behaviour tested in its own file), rows as they were there.
LOAD_ROW = {"Question": "Q?", "Complex_CoT": "R.", "Response": "A."}


def test_all_row_errors_in_one_message():
    rows = [LOAD_ROW, {"Question": "Q"}, {**LOAD_ROW, "Response": "  "}, {**LOAD_ROW, "Complex_CoT": 7}, {**LOAD_ROW, "Complex_CoT": None}]
    with pytest.raises(DataError) as e:
        validate_columns(rows, DataConfig(), "data.json")
    msg = str(e.value)
    assert "data.json: 4 of 5 rows cannot be used" in msg
    assert "field 'Complex_CoT' missing in 1 row (row 2)" in msg
    assert "field 'Response' missing in 1 row (row 2)" in msg
    assert "field 'Response' empty in 1 row (row 3)" in msg
    assert "field 'Complex_CoT' not a string (e.g. int) in 1 row (row 4)" in msg
    assert "field 'Complex_CoT' null in 1 row (row 5)" in msg
    assert "\n" not in msg


def test_duplicates_warn():
    samples, report = validate_columns([LOAD_ROW, LOAD_ROW, {**LOAD_ROW, "Question": "other"}], DataConfig(), "d.json")
    assert len(samples) == 3
    assert report.duplicates == [(2, 1)]
    assert "row 2 repeats row 1" in report.warnings()[0]


SURROGATE = (
    "holds an invalid character (a lone UTF-16 surrogate, \\ud800: half of a character such as an emoji; remove it or replace it with the whole character)"
)


def test_a_lone_surrogate_names_the_row_and_the_field():
    rows = [ROW, ROW, {**ROW, "Question": json.loads('"bad \\ud800 here"')}, {**ROW, "Response": "x\udc00"}]
    msg = error(validate_columns, rows, source="s.json", numbers=[1, 2, 3, 9])
    assert msg.startswith(
        f"Data file s.json: 2 of 4 rows cannot be used: field 'Question' {SURROGATE} in 1 row (row 3); field 'Response' holds an invalid character (a lone UTF-16 surrogate, \\udc00: "
    )
    assert "in 1 row (row 9)" in msg


def test_a_surrogate_pair_is_a_character_not_an_error():
    emoji = json.loads('"smile \\ud83d\\ude00"')  # JSON's escapes for one emoji, as JSON writers emit them
    assert emoji == "smile \U0001f600" and invalid_text(emoji) is None
    samples, _ = validate_columns([{**ROW, "Question": emoji}], DataConfig(), "d.json")
    assert samples[0].messages[-1]["content"] == emoji


def test_a_lone_surrogate_in_a_chat_turn_or_its_reasoning_names_the_turn():
    rows = [
        {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q\ud800"}, {"role": "assistant", "content": "<think>r</think>a"}]},
        msg_row("Q?", "A.", reasoning_content="r\udfff"),
    ]
    msg = error(validate_messages, rows, DataConfig(format="messages"), source="chat.jsonl")
    assert f"field 'messages' turn 2 {SURROGATE} in 1 row (row 1)" in msg
    assert "field 'messages' turn 2 holds an invalid character (a lone UTF-16 surrogate, \\udfff: " in msg and "in 1 row (row 2)" in msg


def test_turns_problem_names_the_turn_and_what_is_wrong():
    user = {"role": "user", "content": "Q"}
    assert turns_problem([user, {"role": "assistant", "content": "A"}]) is None
    assert turns_problem(None) == "missing"
    assert turns_problem("hi") == turns_problem([]) == "not a non-empty list of turns"
    assert turns_problem([user, "A"]) == "turn 2 is not an object {role, content} (str)"
    assert turns_problem([{"content": "Q"}]) == "turn 1 has no 'role'"
    assert turns_problem([{"role": "bot", "content": "Q"}]) == "turn 1 has role 'bot', not system, user or assistant"
    assert turns_problem([user, {"role": "user"}]) == "turn 2 has no 'content'"
    assert turns_problem([{"role": "user", "content": None}]) == "turn 1 has a non-text 'content' (NoneType)"


def test_control_characters_warn_with_rows_and_field_but_tab_newline_and_return_do_not():
    rows = [
        {**ROW, "Question": "Q1\tcol\r\nline"},
        {**ROW, "Question": "Q2", "Response": "ok\x00 \x07 bell"},
        {**ROW, "Question": "Q3", "Response": "x\x7f y\x00", "Complex_CoT": "r\x85s"},  # C1 NEL inside the text (at its ends strip() removes it)
    ]
    samples, report = validate_columns(rows, DataConfig(), "d.json")
    assert [s.response for s in samples] == ["A.", "ok\x00 \x07 bell", "x\x7f y\x00"]  # kept as they are
    assert report.control == [(2, "Response", ["NUL", "BEL"]), (3, "Complex_CoT", ["U+0085"]), (3, "Response", ["DEL", "NUL"])]
    assert report.warnings() == [
        "2 rows hold control characters (NUL, BEL, DEL) in 'Response': rows 2, 3; they are kept as they are (remove them if the model should not learn them).",
        "1 row holds control characters (U+0085) in 'Complex_CoT': row 3; they are kept as they are (remove them if the model should not learn them).",
    ]


def test_control_characters_in_chats_and_many_rows():
    rows = [msg_row(f"Q{i}\x1b[0m", "<think>r</think>a") for i in range(7)]
    _, report = validate_messages(rows, DataConfig(format="messages"), "chat.jsonl", numbers=list(range(11, 18)))
    assert report.warnings() == [
        "7 rows hold control characters (ESC) in 'messages': rows 11, 12, 13, 14, 15, ...; they are kept as they are (remove them if the model should not learn them)."
    ]
