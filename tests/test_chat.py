"""`thinktune chat`: history without thinking, the thinking budget, the display, and the real
terminal session (pexpect on a pseudo-terminal, the demo model, greedy decoding)."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
import torch

from conftest import tiny_model
from thinktune.chat import (
    FORCED_CLOSE,
    HELP,
    MODEL_PREFIX,
    RESET_MESSAGE,
    STOPPED_MESSAGE,
    USER_PROMPT,
    Conversation,
    Display,
    Settings,
    ThinkingBudget,
    ThinkSplitter,
    chat_turn,
    generation_kwargs,
)
from thinktune.data.encode import tokenize
from thinktune.data.render import render_prompt

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = [sys.executable, "-m", "thinktune", "chat"]
BUDGET = ["--max-thinking-tokens", "8"]
GREEDY = ["--model", "smollm2-demo", "--temperature", "0", "--max-new-tokens", "40"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def demo_tok():
    from thinktune.model import load_tokenizer, resolve

    return load_tokenizer(resolve("smollm2-demo"))


# ---- history ----


def test_history_keeps_answers_without_thinking(demo_tok):
    conv = Conversation()
    conv.add("What is two plus two?", "<think>\nadd them: SECRET-REASONING\n</think>\n\nFour.", opened_in_prompt=False)
    conv.add("And three plus three?", "six, no thinking", opened_in_prompt=False)
    assert conv.messages == [
        {"role": "user", "content": "What is two plus two?"},
        {"role": "assistant", "content": "Four."},
        {"role": "user", "content": "And three plus three?"},
        {"role": "assistant", "content": "six, no thinking"},
    ]
    prompt = conv.prompt(demo_tok, "Third question")
    assert prompt == render_prompt(demo_tok, conv.messages + [{"role": "user", "content": "Third question"}])
    assert [prompt.index(s) for s in ("two plus two", "Four.", "three plus three", "six, no thinking", "Third question")] == sorted(
        prompt.index(s) for s in ("two plus two", "Four.", "three plus three", "six, no thinking", "Third question")
    )
    assert "SECRET-REASONING" not in prompt and "<think>" not in prompt and "</think>" not in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


def test_history_when_the_prompt_opened_think_and_when_thinking_never_closed():
    conv = Conversation()
    conv.add("q1", "reasoning only\n</think>\n\nAnswer one.", opened_in_prompt=True)  # R1 templates: prompt ends with <think>\n
    conv.add("q2", "<think>\nran out of tokens while thinking", opened_in_prompt=False)
    assert [m["content"] for m in conv.messages] == ["q1", "Answer one.", "q2", ""]


def test_reset_forgets_every_turn(demo_tok):
    conv = Conversation()
    conv.add("First question", "First answer", False)
    conv.reset()
    assert conv.messages == []
    prompt = conv.prompt(demo_tok, "New question")
    assert "First" not in prompt and prompt == render_prompt(demo_tok, [{"role": "user", "content": "New question"}])


# ---- splitting and display ----

PIECES = ["Hi <thi", "nk>\nreason", "ing 1</th", "ink>\n\nAns", "wer <think> stays"]


def test_splitter_finds_tags_split_across_pieces():
    sp = ThinkSplitter(opened_in_prompt=False)
    events = [e for p in PIECES for e in sp.feed(p)] + sp.flush()
    assert events == [
        ("answer", "Hi "),
        ("open", ""),
        ("think", "\nreason"),
        ("think", "ing 1"),
        ("close", ""),
        ("answer", "\n\nAns"),
        ("answer", "wer <think> stays"),
    ]
    assert sp.think == "\nreasoning 1"
    opened = ThinkSplitter(opened_in_prompt=True)
    assert opened.feed("x</think>y") == [("think", "x"), ("close", ""), ("answer", "y")]


def _shown(tok, color, hide, pieces=PIECES, opened=False):
    out = io.StringIO()
    d = Display(out, tok, color=color, hide_thinking=hide)
    d.start(opened)
    for p in pieces:
        d.write(p)
    d.finish()
    return out.getvalue()


def test_display_dims_folds_or_prints_plain(demo_tok):
    n = len(tokenize(demo_tok, "reasoning 1"))
    assert _shown(demo_tok, color=True, hide=False) == "model> Hi \x1b[2m\nreasoning 1\x1b[0m\n\nAnswer <think> stays\n"
    assert _shown(demo_tok, color=False, hide=False) == "model> Hi <think>\nreasoning 1</think>\n\nAnswer <think> stays\n"
    assert _shown(demo_tok, color=False, hide=True) == f"model> Hi [thinking: {n} tokens]\n\nAnswer <think> stays\n"
    folded = _shown(demo_tok, color=True, hide=True)
    assert "reasoning" not in folded and folded.endswith(f"[thinking: {n} tokens]\x1b[0m\n\nAnswer <think> stays\n")
    unfinished = _shown(demo_tok, color=False, hide=True, pieces=["still thinking"], opened=True)
    assert unfinished == f"model> [thinking: {len(tokenize(demo_tok, 'still thinking'))} tokens, unfinished]\n"


# ---- thinking budget ----


def test_every_decoding_setting_reaches_generate(demo_tok):
    """chat.Settings is a Decoding (one definition, issue 12): none of its fields is dropped."""
    model = tiny_model("llama", len(demo_tok))
    kw = generation_kwargs(model, demo_tok, [1, 2], Settings(max_new_tokens=9, temperature=0.7, top_p=0.8, repetition_penalty=1.3), opened_in_prompt=False)
    assert (kw["max_new_tokens"], kw["do_sample"], kw["temperature"], kw["top_p"], kw["repetition_penalty"]) == (9, True, 0.7, 0.8, 1.3)


def test_budget_forces_the_close_tag_at_position_n_then_the_answer_continues(demo_tok):
    model = tiny_model("llama", len(demo_tok))
    prompt = render_prompt(demo_tok, [{"role": "user", "content": "What is two plus two?"}]) + "<think>\n"
    ids = tokenize(demo_tok, prompt)
    close = tokenize(demo_tok, FORCED_CLOSE)
    budget, max_new = 7, 20
    out = model.generate(
        **generation_kwargs(
            model, demo_tok, ids, Settings(max_new_tokens=max_new, temperature=0.0, top_p=1.0, max_thinking_tokens=budget), opened_in_prompt=True
        )
    )
    gen = out[0, len(ids) :].tolist()
    assert gen[budget : budget + len(close)] == close
    assert "</think>" not in demo_tok.decode(gen[:budget])  # the random model did not close it itself
    rest = gen[budget + len(close) :]  # it goes on after the tag (the random model writes newlines), not forced again
    assert len(rest) == max_new - budget - len(close) > 0 and demo_tok.eos_token_id not in rest
    assert demo_tok.decode(gen).count("</think>") == 1
    free = model.generate(**generation_kwargs(model, demo_tok, ids, Settings(max_new_tokens=max_new, temperature=0.0, top_p=1.0), opened_in_prompt=True))
    assert free[0, len(ids) : len(ids) + budget].tolist() == gen[:budget]  # no budget: same tokens, no forced tag
    assert free[0, len(ids) + budget : len(ids) + budget + len(close)].tolist() != close


def test_chat_turn_streams_a_budgeted_answer_when_the_template_opens_think(demo_tok):
    import copy

    tok = copy.deepcopy(demo_tok)  # an R1-like template: the generation prompt ends with <think>\n
    tok.chat_template = demo_tok.chat_template.replace("assistant\n' }}", "assistant\n<think>\n' }}")
    assert Conversation().prompt(tok, "q").endswith("<|im_start|>assistant\n<think>\n")
    model, out, conv, budget = tiny_model("llama", len(tok)), io.StringIO(), Conversation(), 3
    text = chat_turn(
        model,
        tok,
        conv,
        "What is two plus two?",
        Settings(max_new_tokens=12, temperature=0.0, top_p=1.0, max_thinking_tokens=budget),
        Display(out, tok, color=False, hide_thinking=False),
    )
    ids = tokenize(tok, Conversation().prompt(tok, "What is two plus two?"))
    gen = model.generate(
        **generation_kwargs(model, tok, ids, Settings(max_new_tokens=12, temperature=0.0, top_p=1.0, max_thinking_tokens=budget), opened_in_prompt=True)
    )[0, len(ids) :].tolist()
    assert text == tok.decode(gen, skip_special_tokens=True) and text.index("</think>") == len(tok.decode(gen[:budget])) + 1
    assert out.getvalue() == f"model> <think>{text}\n"  # the opened <think> is shown, the streamed text follows
    assert conv.messages[1] == {"role": "assistant", "content": text.split("</think>")[-1].strip()}


def _forced(proc, seq, vocab):
    scores = proc(torch.tensor([seq]), torch.zeros(1, vocab))
    return None if torch.isfinite(scores).all() else int(scores.argmax())


def test_budget_counts_from_a_think_the_model_writes_itself(demo_tok):
    prompt, vocab, budget = [1, 2, 3], len(demo_tok), 4
    proc = ThinkingBudget(demo_tok, len(prompt), budget, opened_in_prompt=False)
    seq = prompt + tokenize(demo_tok, "Sure.")
    assert _forced(proc, seq, vocab) is None and proc.open_at is None
    seq += tokenize(demo_tok, "<think>\n")[:-1]  # "<", "think", ">" as ordinary tokens
    assert _forced(proc, seq, vocab) is None and proc.open_at == len(seq) - len(prompt)
    filler = tokenize(demo_tok, " a")[0]
    for _ in range(budget):
        seq.append(filler)
        forced = _forced(proc, seq, vocab)
        if forced is not None:
            break
    close = tokenize(demo_tok, FORCED_CLOSE)
    assert len(seq) - len(prompt) == proc.open_at + budget  # forced exactly after `budget` thinking tokens
    for tok in close:
        assert forced == tok
        seq.append(tok)
        forced = _forced(proc, seq, vocab)
    assert forced is None and proc.closed  # then free again


def test_budget_leaves_a_model_that_closes_in_time_alone(demo_tok):
    prompt = [1]
    proc = ThinkingBudget(demo_tok, len(prompt), 50, opened_in_prompt=True)
    seq = prompt + tokenize(demo_tok, "short\n</think>\n\nAnswer")
    assert _forced(proc, seq, len(demo_tok)) is None and proc.closed
    assert _forced(proc, seq + [5] * 60, len(demo_tok)) is None


# ---- the terminal session ----


def _spawn(*extra):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(LAUNCHER[0], LAUNCHER[1:] + [*GREEDY, *extra], cwd=str(ROOT), timeout=120, encoding="utf-8")
    child.expect_exact(HELP)
    child.expect_exact(USER_PROMPT)
    return pexpect, child


def _answer(child, text):
    child.sendline(text)
    child.expect_exact(MODEL_PREFIX)
    child.expect_exact(USER_PROMPT)
    return ANSI.sub("", child.before).strip()


def test_session_two_turns_reset_and_ctrl_d(demo_tok):
    pexpect, child = _spawn("--no-color")
    first = _answer(child, "Hello, who are you?")
    second = _answer(child, "What is the capital of France?")
    assert first and second and first != second
    assert len(tokenize(demo_tok, first)) <= 41 and len(tokenize(demo_tok, second)) <= 41  # --max-new-tokens 40
    child.sendline("/reset")
    child.expect_exact(RESET_MESSAGE)
    child.expect_exact(USER_PROMPT)
    # Greedy: after the reset the same question gets exactly the first answer again (same prompt).
    assert _answer(child, "Hello, who are you?") == first
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0 and child.signalstatus is None


def test_session_ctrl_c_stops_an_answer_and_exit_leaves():
    pexpect, child = _spawn("--max-new-tokens", "3000", "--hide-thinking")
    child.sendline("Write a very long story about a dragon, with many chapters.")
    child.expect_exact(MODEL_PREFIX)
    child.expect(r"\w+ \w+")  # it is streaming
    child.sendintr()
    child.expect_exact(STOPPED_MESSAGE)
    child.expect_exact(USER_PROMPT)
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_bad_flags_are_user_errors():
    from thinktune.cli import build_parser, cmd_chat
    from thinktune.errors import UserError

    p = build_parser()
    with pytest.raises(UserError, match="top p in"):
        cmd_chat(p.parse_args(["chat", "--model", "smollm2-demo", "--top-p", "0"]))
    with pytest.raises(UserError, match="--max-thinking-tokens -1"):
        cmd_chat(p.parse_args(["chat", "--model", "smollm2-demo", "--max-thinking-tokens", "-1"]))
    with pytest.raises(UserError, match="--model"):
        cmd_chat(p.parse_args(["chat"]))
    assert "--batch-size" not in p._subparsers._group_actions[0].choices["chat"].format_help()  # chat answers one at a time


def test_session_thinking_budget_closes_think(tmp_path, demo_tok):
    """Through the terminal: a template that opens <think> in the prompt (as later R1 revisions
    do) and a budget of 8 tokens; the reply's thinking is closed by the budget, then it answers."""
    from thinktune.model import _gguf_cache, resolve

    src = _gguf_cache(resolve("smollm2-demo"))
    folder = tmp_path / "opens-think"
    folder.mkdir()
    for f in src.iterdir():
        if f.name != "chat_template.jinja":
            (folder / f.name).symlink_to(f)
    template = (src / "chat_template.jinja").read_text()
    assert template.endswith("{{ '<|im_start|>assistant\n' }}{% endif %}")
    (folder / "chat_template.jinja").write_text(template.replace("'<|im_start|>assistant\n'", "'<|im_start|>assistant\n<think>\n'"))
    pexpect, child = _spawn("--model", str(folder), "--no-color", *BUDGET)
    reply = _answer(child, "What is anaphylaxis?")
    thinking, _, answer = reply.partition("</think>")
    assert _ and answer.strip(), reply
    assert len(tokenize(demo_tok, thinking.replace("<think>", "").strip())) <= 8
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
