"""budget.py: the thinking budget closes `<think>` at the first word boundary after N thinking
tokens (never mid-word), counts from a `<think>` the model writes itself, leaves a model that
closes in time alone, and runs the same in eval's engine and in chat."""

import doctest

import pytest

from conftest import tiny_model
from thinktune.data.encode import tokenize
from thinktune.decoding import Decoding
from thinktune.evaluate import budget as budget_mod
from thinktune.evaluate.budget import FORCED_CLOSE, GRACE, ThinkBudget


@pytest.fixture(scope="module", autouse=True)
def _fp32(fp32_generation):
    """Token-exact comparisons between runs: fp32 on every CPU (conftest.fp32_generation)."""


def test_doctests():
    result = doctest.testmod(budget_mod)
    assert result.attempted == 2 and result.failed == 0


def emit(tokenizer, b: ThinkBudget, text: str) -> list[int]:
    """Feed `text`'s tokens to the budget as the model's choices; the tokens written instead."""
    out = []
    for token in tokenize(tokenizer, text):
        out.append(b.choose(token))
        if b.forced:
            break
    return out + [b.choose(0) for _ in list(b.pending)]


@pytest.mark.parametrize("budget", [1, 3, 4, 6, 9, 10, 11])
def test_the_close_goes_between_words_never_inside_one(r1_tokenizer, budget):
    # "pheochromocytoma" is 7 tokens in the R1 vocabulary: a budget that ends inside it waits for " and"
    text = "The patient has pheochromocytoma and fever today"
    ids = tokenize(r1_tokenizer, text)
    pieces = [r1_tokenizer.decode([t]) for t in ids]
    assert pieces[3:11] == [" p", "he", "och", "rom", "oc", "yt", "oma", " and"]
    b = ThinkBudget(r1_tokenizer, budget, opened=True)
    written = r1_tokenizer.decode(emit(r1_tokenizer, b, text), skip_special_tokens=False)
    thinking, _, rest = written.partition(FORCED_CLOSE)
    assert rest == "" and written.endswith(FORCED_CLOSE)
    assert text.startswith(thinking) and text[len(thinking)] == " "  # the next token would have begun a new word
    assert b.thought == len(tokenize(r1_tokenizer, thinking)) >= budget and b.forced == "boundary"
    # the thinking is the shortest run of whole words holding at least `budget` tokens
    words = text.split(" ")
    shortest = next(" ".join(words[:n]) for n in range(1, len(words) + 1) if len(tokenize(r1_tokenizer, " ".join(words[:n]))) >= budget)
    assert thinking == shortest


def test_a_budget_of_zero_answers_at_once(r1_tokenizer):
    b = ThinkBudget(r1_tokenizer, 0, opened=True)
    assert r1_tokenizer.decode(emit(r1_tokenizer, b, "Okay so"), skip_special_tokens=False) == FORCED_CLOSE and b.thought == 0


def test_chinese_closes_between_characters(r1_tokenizer):
    b = ThinkBudget(r1_tokenizer, 2, opened=True)
    written = r1_tokenizer.decode(emit(r1_tokenizer, b, "患者高血压伴发热"), skip_special_tokens=False)
    thinking = written.split(FORCED_CLOSE)[0]
    assert thinking and "患者高血压伴发热".startswith(thinking) and b.forced == "boundary"


def test_a_run_on_word_is_closed_after_the_grace(r1_tokenizer):
    b = ThinkBudget(r1_tokenizer, 2, opened=True)
    word = "x" * 400  # no boundary for hundreds of tokens
    written = emit(r1_tokenizer, b, word)
    assert b.forced == "grace" and b.thought == 2 + GRACE
    assert r1_tokenizer.decode(written, skip_special_tokens=False).endswith(FORCED_CLOSE)


def test_counting_starts_at_a_think_the_model_writes(r1_tokenizer):
    b = ThinkBudget(r1_tokenizer, 3, opened=False)
    for t in tokenize(r1_tokenizer, "Sure. Let me see"):  # not thinking yet: nothing counted, nothing forced
        assert b.choose(t) == t
    assert (b.state, b.thought) == ("before", 0)
    for t in tokenize(r1_tokenizer, "<think>"):
        b.choose(t)
    assert (b.state, b.thought) == ("think", 0)
    written = r1_tokenizer.decode(emit(r1_tokenizer, b, " one two three four five"), skip_special_tokens=False)
    assert written == " one two three" + FORCED_CLOSE


def test_a_model_that_closes_in_time_is_left_alone(r1_tokenizer):
    b = ThinkBudget(r1_tokenizer, 50, opened=True)
    ids = tokenize(r1_tokenizer, "short\n</think>\n\nThe answer is B. " + "more words " * 40)
    assert [b.choose(t) for t in ids] == ids and b.forced is None and b.state == "done"


def test_eval_engine_and_chat_force_the_same_close(r1_tokenizer):
    """One implementation: generate_all (eval) and chat's reply write the same tokens, the
    forced close in the middle, the answer after it."""
    from thinktune.chat import reply
    from thinktune.evaluate.batching import Engine
    from thinktune.evaluate.generate import generate_all

    model = tiny_model("qwen2", len(r1_tokenizer), seed=5)
    prompt = tokenize(r1_tokenizer, "<｜begin▁of▁sentence｜><｜User｜>What is two plus two?<｜Assistant｜><think>\n")
    dec = Decoding(max_new_tokens=40, temperature=0.0, top_p=1.0, max_thinking_tokens=6, batch_size=4)
    got, _ = generate_all(model, r1_tokenizer, [prompt] * 3, dec)
    free, _ = generate_all(model, r1_tokenizer, [prompt], Decoding(**{**dec.to_dict(), "max_thinking_tokens": None}))
    assert got[0] == got[1] == got[2] and got[0]["forced_close"] in ("boundary", "grace")
    text = got[0]["text"]
    assert text.count("</think>") == 1 and "</think>" not in free[0]["text"][: len(text.split("</think>")[0]) + 8]
    thinking = text.split(FORCED_CLOSE.strip())[0]
    assert free[0]["text"].startswith(thinking.rstrip("\n"))  # the same tokens up to the close
    assert len(tokenize(r1_tokenizer, thinking.rstrip("\n"))) >= 6
    shown: list[str] = []
    chat_text, _ = reply(Engine(model, r1_tokenizer, dec), r1_tokenizer, prompt, True, shown.append)
    assert chat_text == text and "".join(shown) == text
