"""Compare and chat (ui/talk.py): the streamed answer is the engine's own output, cut at the
think tags; the thinking is a folded message."""

from __future__ import annotations

import copy

import pytest

from conftest import tiny_model
from thinktune.data.encode import tokenize
from thinktune.data.render import render_prompt
from thinktune.decoding import Decoding
from thinktune.ui.talk import messages, stream_answer


@pytest.fixture(scope="module")
def r1_like():
    from thinktune.model import load_tokenizer, resolve

    tok = copy.deepcopy(load_tokenizer(resolve("smollm2-demo")))  # the generation prompt ends with <think>\n, as R1's does
    tok.chat_template = tok.chat_template.replace("assistant\n' }}", "assistant\n<think>\n' }}")
    return tok


def test_the_stream_is_the_engines_answer_split_at_the_think_tags(r1_like):
    from thinktune.evaluate.generate import generate_all

    model = tiny_model("llama", len(r1_like))
    dec = Decoding(max_new_tokens=16, temperature=0.0, top_p=1.0, batch_size=1, max_thinking_tokens=4)
    steps = list(stream_answer(model, r1_like, "What is two plus two?", dec))
    thinking, answer, done = steps[-1]
    assert done and all(not d for _, _, d in steps[:-1]) and len(steps) > 2  # streamed, piece by piece
    ids = tokenize(r1_like, render_prompt(r1_like, [{"role": "user", "content": "What is two plus two?"}]))
    [want], _ = generate_all(model, r1_like, [ids], dec)  # eval's path: the same engine and budget
    think_part, _, answer_part = want["text"].partition("</think>")
    assert (thinking, answer) == (think_part, answer_part) and want["forced_close"]


def test_the_thinking_is_a_folded_message_before_the_answer():
    got = messages("q?", " I think. ", " It is B. ", "en", done=True)
    assert got == [
        {"role": "user", "content": "q?"},
        {"role": "assistant", "content": "I think.", "metadata": {"title": "Thinking", "status": "done"}},
        {"role": "assistant", "content": "It is B."},
    ]
    assert messages("q?", "", "", "zh", done=True)[-1]["content"] == "（思考之后没有给出答案）"
    assert messages("q?", "hm", "", "en", done=False)[1]["metadata"]["status"] == "pending"
