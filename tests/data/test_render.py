"""render.py: the prompt through the model's chat template (or the plain format), the reasoning by hand."""

import copy
import doctest

import pytest

from conftest import R1_ASSISTANT, R1_BOS, R1_THINK, R1_THINK_END, R1_USER
from thinktune.data import render
from thinktune.data.encode import tokenize
from thinktune.data.render import answer_prefix, has_template, opens_think, render_completion, render_prompt

BOS, USER, ASSISTANT, EOS = "<｜begin▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"


def test_render_completion_docstring_examples_run():
    tests = doctest.DocTestFinder().find(render.render_completion, "render_completion", globs=vars(render))
    runner = doctest.DocTestRunner()
    for t in tests:
        runner.run(t)
    assert (runner.tries, runner.failures) == (2, 0)


def test_docstring_examples_run():
    result = doctest.testmod(render)
    assert (result.attempted, result.failed) == (3, 0)


@pytest.mark.parametrize(
    "prompt, want",
    [
        (f"{ASSISTANT}<think>\n", True),
        (f"{ASSISTANT}<think>", True),
        (f"{ASSISTANT}<think>\n\n  ", True),  # trailing white space does not matter
        (ASSISTANT, False),
        ("", False),
        (f"{ASSISTANT}</think>\n", False),  # a closed think is not an open one
        (f"{ASSISTANT}<think>\nstarted", False),
        ("### Answer:\n", False),
    ],
)
def test_opens_think(prompt, want):
    assert opens_think(prompt) is want


@pytest.mark.parametrize(
    "prompt, want",
    [
        (ASSISTANT, "<think>\nWhy.\n</think>\n\nBecause."),
        (f"{ASSISTANT}<think>\n", "Why.\n</think>\n\nBecause."),  # the template opened it: not a second <think>
        (f"{ASSISTANT}<think>", "\nWhy.\n</think>\n\nBecause."),  # opened without its newline: the newline is added
        ("### Answer:\n", "<think>\nWhy.\n</think>\n\nBecause."),
    ],
)
def test_render_completion(prompt, want):
    completion = render_completion(prompt, "Why.", "Because.")
    assert completion == want
    assert (prompt + completion).count("<think>") == 1 and (prompt + completion).endswith("\n</think>\n\nBecause.")
    assert answer_prefix(completion, "Because.") == want[: -len("Because.")]


def test_plain_rendering_without_a_template(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = None
    assert not has_template(tok) and has_template(tiny_tokenizer)
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q1?"},
        {"role": "assistant", "content": "<think>\nhidden\n</think>\n\n A1. "},
        {"role": "user", "content": "Q2?"},
    ]
    prompt = render_prompt(tok, msgs)
    assert prompt == "Be brief.\n\n### Question:\nQ1?\n\n### Answer:\nA1.\n\n### Question:\nQ2?\n\n### Answer:\n"
    assert "hidden" not in prompt  # earlier reasoning is not put back in the prompt
    assert render_prompt(tok, [{"role": "assistant", "content": "plain answer"}, {"role": "user", "content": "Q"}]) == (
        "### Answer:\nplain answer\n\n### Question:\nQ\n\n### Answer:\n"
    )
    assert not opens_think(prompt)
    assert prompt + render_completion(prompt, "r", "a") == prompt + "<think>\nr\n</think>\n\na"


def test_an_empty_string_template_counts_as_none(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = ""
    assert not has_template(tok)
    assert render_prompt(tok, [{"role": "user", "content": "Q"}]) == "### Question:\nQ\n\n### Answer:\n"


def test_tiny_template_is_used_when_there_is_one(tiny_tokenizer):
    prompt = render_prompt(tiny_tokenizer, [{"role": "user", "content": "what is two ?"}])
    assert prompt == "<s><user> what is two ? <assistant> "
    v = tiny_tokenizer.get_vocab()
    assert tokenize(tiny_tokenizer, prompt) == [v[w] for w in ["<s>", "<user>", "what", "is", "two", "?", "<assistant>"]]


def test_r1_template_prompt_text_and_ids(r1_tokenizer):
    prompt = render_prompt(r1_tokenizer, [{"role": "user", "content": "Hello"}])
    assert prompt == f"{BOS}{USER}Hello{ASSISTANT}"
    assert tokenize(r1_tokenizer, prompt) == [R1_BOS, R1_USER, 9707, R1_ASSISTANT]
    assert not opens_think(prompt)
    full = prompt + render_completion(prompt, "Hi", "world")
    ids = tokenize(r1_tokenizer, full)
    assert ids[:4] == [R1_BOS, R1_USER, 9707, R1_ASSISTANT] and ids[4] == R1_THINK
    assert ids.count(R1_THINK) == 1 and ids.count(R1_THINK_END) == 1
    assert r1_tokenizer.decode(ids[4:]) == "<think>\nHi\n</think>\n\nworld"


def test_r1_template_system_and_earlier_turns(r1_tokenizer):
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Q1?"},
        {"role": "assistant", "content": "<think>\nold reasoning\n</think>\n\nA1."},
        {"role": "user", "content": "Q2?"},
    ]
    prompt = render_prompt(r1_tokenizer, msgs)
    # the official template puts the system text right after bos and keeps only what follows </think>
    assert prompt == f"{BOS}Be brief.{USER}Q1?{ASSISTANT}\n\nA1.{EOS}{USER}Q2?{ASSISTANT}"
    assert "old reasoning" not in prompt


def test_r1_template_revision_that_opens_think(r1_tokenizer):
    tok = copy.deepcopy(r1_tokenizer)
    tok.chat_template = tok.chat_template.replace("{{'<｜Assistant｜>'}}{% endif %}", "{{'<｜Assistant｜><think>\\n'}}{% endif %}")
    prompt = render_prompt(tok, [{"role": "user", "content": "Hello"}])
    assert prompt == f"{BOS}{USER}Hello{ASSISTANT}<think>\n" and opens_think(prompt)
    completion = render_completion(prompt, "Hi", "world")
    assert completion == "Hi\n</think>\n\nworld"
    ids = tokenize(tok, prompt + completion)
    assert ids[:6] == [R1_BOS, R1_USER, 9707, R1_ASSISTANT, R1_THINK, 198] and ids.count(R1_THINK) == 1
    # the same text, token for token, as the original template with the completion opening <think>
    plain = render_prompt(r1_tokenizer, [{"role": "user", "content": "Hello"}])
    assert tokenize(r1_tokenizer, plain + render_completion(plain, "Hi", "world")) == ids
