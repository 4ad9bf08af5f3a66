"""evaluate/run.py: one generation split into thinking and answer (also when the prompt opened
<think>), the accuracy summary, prompts from a file, and how a run measured its held-out loss."""

import json

import pytest

from conftest import SAMPLE
from thinktune.errors import DataError
from thinktune.evaluate.run import file_prompts, heldout_file_rows, read_prompts, run_measure, split_output, summarize
from thinktune.evaluate.stats import wilson_interval


def test_split_output_counts_thinking_and_answer_tokens_with_the_real_tokenizer(r1_tokenizer):
    out = {"text": "Check the dose.\n</think>\n\nThe answer is B.", "tokens": 14, "stop": "eos"}
    opened = split_output("<｜User｜>Q<｜Assistant｜><think>\n", out, r1_tokenizer)  # the template opened <think>
    assert (opened["think"], opened["answer"], opened["closed_think"]) == ("Check the dose.", "The answer is B.", True)
    assert opened["think_tokens"] == len(r1_tokenizer("Check the dose.", add_special_tokens=False)["input_ids"]) == 4
    assert opened["answer_tokens"] == 5 and (opened["output_tokens"], opened["stop"]) == (14, "eos")
    unopened = split_output("<｜User｜>Q<｜Assistant｜>", {"text": "The answer is B.", "tokens": 5, "stop": "max_new_tokens"}, r1_tokenizer)
    assert (unopened["think"], unopened["answer"], unopened["closed_think"], unopened["think_tokens"]) == ("", "The answer is B.", False, 0)


def test_summarize_counts_and_intervals():
    preds = [
        {"correct": True, "how": "answer_is", "closed_think": True, "stop": "eos", "think_tokens": 10, "answer_tokens": 4},
        {"correct": False, "how": "unparsed", "closed_think": False, "stop": "max_new_tokens", "think_tokens": 30, "answer_tokens": 0},
        {"correct": True, "how": "letter", "closed_think": True, "stop": "eos", "think_tokens": 20, "answer_tokens": 2},
    ]
    s = summarize(preds)
    assert (s["items"], s["correct"], s["accuracy"]) == (3, 2, 2 / 3) and s["accuracy_ci95"] == list(wilson_interval(2, 3))
    assert (s["unparsed_rate"], s["closed_think_rate"], s["eos_rate"]) == (1 / 3, 2 / 3, 2 / 3)
    assert (s["think_tokens_mean"], s["think_tokens_median"], s["answer_tokens_median"]) == (20, 20, 2)
    assert summarize([])["accuracy"] == 0.0


def test_file_prompts_take_prompts_questions_or_chats_and_name_bad_rows(tmp_path, r1_tokenizer):
    good = tmp_path / "in.jsonl"
    rows = [{"prompt": "A?"}, {"Question": "B?"}, {"messages": [{"role": "user", "content": "C?"}, {"role": "assistant", "content": "old"}]}]
    good.write_text("\n".join(json.dumps(r) for r in rows))
    texts, ids = file_prompts(str(good), r1_tokenizer)
    assert [t.split("<｜User｜>")[1].split("<｜Assistant｜>")[0] for t in texts] == ["A?", "B?", "C?"] and "old" not in texts[2]
    assert ids[0] == r1_tokenizer(texts[0], add_special_tokens=False)["input_ids"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "A?"}\n{"prompt": "  "}\n{"text": "x"}\n')
    with pytest.raises(
        DataError, match=r"Input file .*bad.jsonl: 2 of 3 rows cannot be used: field 'prompt' empty in 1 row \(row 2\); field 'prompt' missing .* \(row 3\)"
    ):
        file_prompts(str(bad), r1_tokenizer)


def test_a_cot_file_is_encoded_as_in_training_with_every_row_kept(r1_tokenizer):
    rows, dropped = heldout_file_rows(r1_tokenizer, str(SAMPLE))
    assert (len(rows), dropped) == (150, 0) and [r["row"] for r in rows] == list(range(1, 151))  # none held out, none over 4096
    assert all(r["labels"][: r["prompt_tokens"]] == [-100] * r["prompt_tokens"] and r["labels"][-1] == r1_tokenizer.eos_token_id for r in rows)


def test_run_measure_reads_the_runs_precision_and_rows_per_pass(tmp_path):
    (tmp_path / "summary.json").write_text(json.dumps({"precision": "bf16", "rows_per_pass": 1}))
    assert run_measure(str(tmp_path)) == ("bf16", 1)
    assert run_measure(str(tmp_path / "plain-peft-folder")) == ("fp32", 2) == run_measure(None)


def write_rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_read_prompts_needs_no_model_and_file_prompts_renders_what_it_read(tmp_path, r1_tokenizer):
    chat = [{"role": "system", "content": "S"}, {"role": "user", "content": "C?"}]
    path = write_rows(
        tmp_path / "in.jsonl", [{"prompt": "", "question": "A?"}, {"messages": chat + [{"role": "assistant", "content": "old"}]}, {"messages": chat}]
    )
    prompts = read_prompts(path)
    assert prompts == [[{"role": "user", "content": "A?"}], chat, chat]  # an empty prompt gives way to a question
    assert file_prompts("not read", r1_tokenizer, prompts) == file_prompts(path, r1_tokenizer)


def test_malformed_messages_name_the_file_the_row_and_the_turn(tmp_path):
    user = {"role": "user", "content": "Q"}
    rows = [
        {"messages": [{"role": "user"}]},
        {"messages": "hi"},
        {"prompt": "fine"},
        {"messages": [user, 7]},
        {"messages": [{"role": "robot", "content": "Q"}]},
        {"messages": [{"role": "system", "content": "S"}, {"role": "assistant", "content": "A"}]},
        {"messages": [user, {"role": "assistant", "content": "A"}, {"role": "assistant", "content": "B"}]},
    ]
    path = write_rows(tmp_path / "gen_bad.jsonl", rows)
    with pytest.raises(DataError) as e:
        read_prompts(path)
    assert str(e.value) == (
        f"Input file {path}: 6 of 7 rows cannot be used: field 'messages' turn 1 has no 'content' in 1 row (row 1); "
        "field 'messages' not a non-empty list of turns in 1 row (row 2); "
        "field 'messages' turn 2 is not an object {role, content} (int) in 1 row (row 4); "
        "field 'messages' turn 1 has role 'robot', not system, user or assistant in 1 row (row 5); "
        "field 'messages' does not end with a user turn (a last assistant turn aside) in 2 rows (row 6, 7). "
        "Rows are counted from 1. Each row needs a non-empty 'prompt', 'question' or 'Question' text, or a 'messages' list "
        "of {role: system|user|assistant, content: text} turns ending with a user turn (a last assistant turn is dropped); fix those rows."
    )


def test_a_lone_surrogate_in_a_prompt_is_named_before_the_tokenizer_sees_it(tmp_path):
    path = tmp_path / "gen_sur.jsonl"
    path.write_text('{"prompt": "ok"}\n\n{"prompt": "bad \\ud800"}\n{"messages": [{"role": "user", "content": "x\\udc00"}]}\n')
    with pytest.raises(DataError) as e:
        read_prompts(str(path))
    msg = str(e.value)
    assert msg.startswith(
        f"Input file {path}: 2 of 3 rows cannot be used: field 'prompt' holds an invalid character (a lone UTF-16 surrogate, \\ud800: "
        "half of a character such as an emoji; remove it or replace it with the whole character) in 1 row (row 2); "
        "field 'messages' turn 1 holds an invalid character (a lone UTF-16 surrogate, \\udc00: "
    )
    assert msg.count("in 1 row (row 3)") == 1  # JSONL rows are counted without the blank line, as in training
