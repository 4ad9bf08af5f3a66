"""Labels: the prompt is masked, the end token is the real eos (once), the reasoning is kept."""

import doctest

import pytest

from conftest import R1_ASSISTANT, R1_BOS, R1_EOS, R1_THINK, R1_THINK_END, R1_USER
from thinktune.config import DataConfig
from thinktune.data import encode as encode_mod
from thinktune.data import render as render_mod
from thinktune.data.encode import IGNORE_INDEX, encode_example, tokenize
from thinktune.data.pipeline import prepare


def test_docstring_examples_run():
    for mod in (encode_mod, render_mod):
        result = doctest.testmod(mod)
        assert result.attempted > 0 and result.failed == 0, mod.__name__


def test_r1_fixture_has_the_real_ids(r1_tokenizer):
    tok = r1_tokenizer
    assert (tok.bos_token_id, tok.eos_token_id) == (R1_BOS, R1_EOS)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ["<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"]}
    assert ids == {"<｜User｜>": R1_USER, "<｜Assistant｜>": R1_ASSISTANT, "<think>": R1_THINK, "</think>": R1_THINK_END}
    # Special tokens written in text are single ids (transformers' own GGUF conversion gets
    # <｜User｜> wrong and adds bos/eos as 152065/152066).
    assert tokenize(tok, "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜><think>\n") == [R1_BOS, R1_USER, 13048, R1_ASSISTANT, R1_THINK, 198]
    assert len(tok) == 151665
    assert tok("Hello world")["input_ids"] == [R1_BOS, 9707, 1879]


def test_tutorial_end_text_is_not_a_token(r1_tokenizer):
    """Defect 3: '<|endoftext|>' as text splits into pieces in the R1 vocabulary."""
    pieces = tokenize(r1_tokenizer, "<|endoftext|>")
    assert len(pieces) > 1 and R1_EOS not in pieces


def test_exact_ids_on_tiny_tokenizer(tiny_tokenizer):
    tok = tiny_tokenizer
    cfg = DataConfig(path="mem", limit=None, val_fraction=0.0, val_min_rows=0)
    rows = [{"Question": "what is two plus two ?", "Complex_CoT": "add them .", "Response": "four ."}] * 2
    prepared = prepare(cfg, tok, rows=rows)
    ex = prepared.train[0] if prepared.train else prepared.val[0]
    v = tok.get_vocab()
    prompt = [v[w] for w in ["<s>", "<user>", "what", "is", "two", "plus", "two", "?", "<assistant>"]]
    completion = [v[w] for w in ["<think>", "add", "them", ".", "</think>", "four", "."]] + [tok.eos_token_id]
    assert ex["input_ids"] == prompt + completion
    assert ex["labels"] == [IGNORE_INDEX] * len(prompt) + completion


def test_train_on_prompt_labels_everything(tiny_tokenizer):
    cfg = DataConfig(path="mem", limit=None, val_fraction=0.0, val_min_rows=0, train_on_prompt=True)
    rows = [{"Question": "what is two ?", "Complex_CoT": "add .", "Response": "four ."}] * 2
    ex = prepare(cfg, tiny_tokenizer, rows=rows).train[0]
    assert ex["labels"] == ex["input_ids"]


def test_eos_appended_once():
    assert encode_example([1], [7, 2], eos_id=2)["input_ids"] == [1, 7, 2]
    assert encode_example([1], [7], eos_id=2)["input_ids"] == [1, 7, 2]


def _labelled(ex):
    return [t for t, l in zip(ex["input_ids"], ex["labels"]) if l != IGNORE_INDEX]


@pytest.mark.parametrize("data", ["shared_en", "shared_zh"])
def test_every_labelled_span_is_reasoning_answer_eos(r1_tokenizer, data, request):
    """Defects 2, 3, 4 on every real row: labels decode to exactly <think> CoT </think> answer + eos."""
    rows = request.getfixturevalue(data)
    cfg = DataConfig(path=data, limit=None, val_fraction=0.0, val_min_rows=0, max_length_cap=100000)
    prepared = prepare(cfg, r1_tokenizer, rows=rows)
    assert len(prepared.train) == len(rows)
    for ex in prepared.train:
        row = rows[ex["row"] - 1]
        labelled = _labelled(ex)
        want = f"<think>\n{row['Complex_CoT'].strip()}\n</think>\n\n{row['Response'].strip()}<｜end▁of▁sentence｜>"
        assert r1_tokenizer.decode(labelled) == want, ex["row"]
        assert labelled.count(R1_EOS) == 1 and labelled[-1] == R1_EOS
        prompt = ex["input_ids"][: ex["prompt_tokens"]]
        assert prompt[:2] == [R1_BOS, R1_USER] and prompt[-1] == R1_ASSISTANT and prompt.count(R1_BOS) == 1
        assert labelled[0] == R1_THINK and R1_THINK_END in labelled


def test_template_revision_that_opens_think(r1_tokenizer, shared_en):
    """Later R1 template revisions end the generation prompt with '<think>\\n': not doubled."""
    import copy

    tok = copy.deepcopy(r1_tokenizer)
    tok.chat_template = tok.chat_template.replace("{{'<｜Assistant｜>'}}{% endif %}", "{{'<｜Assistant｜><think>\\n'}}{% endif %}")
    cfg = DataConfig(path="en", limit=20, val_fraction=0.0, val_min_rows=0, max_length_cap=100000)
    prepared = prepare(cfg, tok, rows=shared_en)
    for ex in prepared.train:
        row = shared_en[ex["row"] - 1]
        prompt = ex["input_ids"][: ex["prompt_tokens"]]
        assert prompt[-3:] == [R1_ASSISTANT, R1_THINK, 198]  # 198 = "\n"
        assert (ex["input_ids"]).count(R1_THINK) == 1
        want = f"{row['Complex_CoT'].strip()}\n</think>\n\n{row['Response'].strip()}<｜end▁of▁sentence｜>"
        assert r1_tokenizer.decode(_labelled(ex)) == want


def test_chat_template_alone_would_drop_reasoning(r1_tokenizer):
    """Why rendering is done by hand: the official template strips everything before </think>."""
    msgs = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "<think>\nsecret reasoning\n</think>\n\nA."}]
    text = r1_tokenizer.apply_chat_template(msgs, tokenize=False)
    assert "secret reasoning" not in text and text.endswith("A.<｜end▁of▁sentence｜>")


def test_messages_format(r1_tokenizer):
    rows = [
        {"messages": [{"role": "user", "content": "Q1?"}, {"role": "assistant", "content": "<think>\nR1.\n</think>\n\nA1."}]},
        {"messages": [{"role": "user", "content": "Q2?"}, {"role": "assistant", "content": "A2.", "reasoning_content": "R2."}]},
    ]
    cfg = DataConfig(path="mem", format="messages", limit=None, val_fraction=0.0, val_min_rows=0)
    prepared = prepare(cfg, r1_tokenizer, rows=rows)
    got = sorted(r1_tokenizer.decode(_labelled(ex)) for ex in prepared.train)
    assert got == ["<think>\nR1.\n</think>\n\nA1.<｜end▁of▁sentence｜>", "<think>\nR2.\n</think>\n\nA2.<｜end▁of▁sentence｜>"]


def test_plain_format_without_template(tiny_tokenizer):
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = None
    cfg = DataConfig(path="mem", limit=None, val_fraction=0.0, val_min_rows=0)
    rows = [{"Question": "what is two ?", "Complex_CoT": "add .", "Response": "four ."}] * 2
    ex = prepare(cfg, tok, rows=rows).train[0]
    prompt_text = tok.decode(ex["input_ids"][: ex["prompt_tokens"]])
    assert ex["input_ids"][0] == tok.bos_token_id
    assert "what is two ?" in prompt_text
    assert render_mod.render_prompt(tok, [{"role": "user", "content": "Q"}]) == "### Question:\nQ\n\n### Answer:\n"
