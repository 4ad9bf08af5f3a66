"""`thinktune chat`: history without thinking, the thinking budget, the display, and the real
terminal session (pexpect on a pseudo-terminal, the demo model, greedy decoding)."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest

from conftest import cycling_model, tiny_model
from thinktune.chat import (
    ANSWER_LABEL,
    HELP,
    LOOP_MESSAGE,
    MODEL_PREFIX,
    RESET_MESSAGE,
    STOPPED_MESSAGE,
    THINKING_LABEL,
    USER_PROMPT,
    Conversation,
    Display,
    ThinkSplitter,
    chat_turn,
)
from thinktune.data.encode import tokenize
from thinktune.data.render import render_prompt
from thinktune.decoding import Decoding
from thinktune.evaluate.batching import Engine
from thinktune.evaluate.budget import GRACE

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
    # dim text, and labels in words for terminals that do not show dim (issue 14)
    assert _shown(demo_tok, color=True, hide=False) == f"model> Hi \x1b[2m{THINKING_LABEL}\nreasoning 1\x1b[0m\n{ANSWER_LABEL}\n\nAnswer <think> stays\n"
    assert _shown(demo_tok, color=False, hide=False) == "model> Hi <think>\nreasoning 1</think>\n\nAnswer <think> stays\n"
    assert _shown(demo_tok, color=False, hide=True) == f"model> Hi [thinking: {n} tokens]\n\nAnswer <think> stays\n"
    folded = _shown(demo_tok, color=True, hide=True)
    assert "reasoning" not in folded and folded.endswith(f"[thinking: {n} tokens]\x1b[0m\n\nAnswer <think> stays\n")
    unfinished = _shown(demo_tok, color=False, hide=True, pieces=["still thinking"], opened=True)
    assert unfinished == f"model> [thinking: {len(tokenize(demo_tok, 'still thinking'))} tokens, unfinished]\n"


# ---- thinking budget ----


def test_every_decoding_setting_reaches_the_engine():
    """chat decodes with the CLI's Decoding (one definition, issue 12): none of its flags is dropped."""
    from thinktune.cli import _decoding, build_parser

    args = build_parser().parse_args(["chat", "--max-new-tokens", "9", "--temperature", "0.7", "--top-p", "0.8", "--max-thinking-tokens", "5", "--seed", "3"])
    assert _decoding(args, args.seed) == Decoding(max_new_tokens=9, temperature=0.7, top_p=0.8, batch_size=1, seed=3, max_thinking_tokens=5)


def test_chat_turn_streams_a_budgeted_answer_when_the_template_opens_think(demo_tok):
    import copy

    from thinktune.evaluate.generate import generate_all

    tok = copy.deepcopy(demo_tok)  # an R1-like template: the generation prompt ends with <think>\n
    tok.chat_template = demo_tok.chat_template.replace("assistant\n' }}", "assistant\n<think>\n' }}")
    assert Conversation().prompt(tok, "q").endswith("<|im_start|>assistant\n<think>\n")
    model, out, conv = tiny_model("llama", len(tok)), io.StringIO(), Conversation()
    dec = Decoding(max_new_tokens=16, temperature=0.0, top_p=1.0, batch_size=1, max_thinking_tokens=3)
    text = chat_turn(Engine(model, tok, dec), tok, conv, "What is two plus two?", Display(out, tok, color=False, hide_thinking=False))
    ids = tokenize(tok, Conversation().prompt(tok, "What is two plus two?"))
    [want], _ = generate_all(model, tok, [ids], dec)  # eval's path: the same engine and budget
    assert text == want["text"] and "</think>" in text and want["forced_close"]
    assert out.getvalue() == f"model> <think>{text}\n"  # the opened <think> is shown, the streamed text follows
    assert conv.messages[1] == {"role": "assistant", "content": text.split("</think>")[-1].strip()}


def test_chat_turn_says_when_it_stopped_a_loop(demo_tok):
    cycle = tuple(tokenize(demo_tok, " so so so")[:1] + tokenize(demo_tok, " and")[:1] + tokenize(demo_tok, " then")[:1])
    model, out, conv = cycling_model(len(demo_tok), cycle), io.StringIO(), Conversation()
    dec = Decoding(max_new_tokens=200, temperature=0.0, top_p=1.0, batch_size=1)
    text = chat_turn(Engine(model, demo_tok, dec), demo_tok, conv, "Hi", Display(out, demo_tok, color=False, hide_thinking=False))
    assert text == demo_tok.decode(list(cycle) * 32)  # 96 tokens: three repeats were seen at the first check past MIN_TOKENS
    assert out.getvalue() == f"model> {text}\n{LOOP_MESSAGE}\n"
    assert conv.messages[1] == {"role": "assistant", "content": text.strip()}


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
    assert len(tokenize(demo_tok, thinking.replace("<think>", "").strip())) <= 8 + GRACE  # closed at the next word boundary
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
