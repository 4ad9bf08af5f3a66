"""`thinktune chat`: an interactive terminal chat with a model (+ adapter), thinking shown apart.

Answers come from the same continuous-batching engine as eval (a batch of one), with the same
thinking budget (evaluate/budget.py), token by token through transformers' `TextStreamer`. It runs
in the main thread, so Ctrl-C stops an answer where it is. Earlier assistant turns are kept without
their thinking, as the R1 template expects.
"""

from __future__ import annotations

import sys
from contextlib import suppress

from .data.encode import tokenize
from .data.render import THINK_CLOSE, THINK_OPEN, opens_think, render_prompt
from .decoding import Decoding
from .evaluate.extract import split_think

DIM, RESET = "\033[2m", "\033[0m"
THINKING_LABEL, ANSWER_LABEL = "[thinking] ", "[answer] "  # said in words too: not every terminal shows dim text
USER_PROMPT, MODEL_PREFIX = "you> ", "model> "
HELP = "Type a message and press Enter. /reset forgets the conversation, /exit or Ctrl-D leaves, Ctrl-C stops an answer."
RESET_MESSAGE = "[conversation reset: the model no longer sees the earlier turns]"
STOPPED_MESSAGE = "[stopped; this turn is not kept in the conversation]"
LOOP_MESSAGE = "[stopped: the model was writing the same passage over and over (--no-stop-loops lets it run)]"


class Conversation:
    """The turns so far, assistant turns stored as their answer only (no thinking)."""

    def __init__(self) -> None:
        self.messages: list[dict] = []

    def prompt(self, tokenizer, user: str) -> str:
        return render_prompt(tokenizer, self.messages + [{"role": "user", "content": user}])

    def add(self, user: str, output: str, opened_in_prompt: bool) -> None:
        _, answer, _ = split_think(THINK_OPEN + output if opened_in_prompt else output)
        self.messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]

    def reset(self) -> None:
        self.messages.clear()


def reply(engine, tokenizer, prompt_ids: list[int], opened_in_prompt: bool, write) -> tuple[str, str | None]:
    """One answer from the engine (a batch of one, greedy or sampled as its Decoding says, with its
    thinking budget), its text passed to `write` as it comes; returns the whole text and why it stopped."""
    import torch
    from transformers import TextStreamer

    from .evaluate.batching import Row
    from .evaluate.budget import ThinkBudget

    class Streamer(TextStreamer):
        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if text:
                write(text)

    streamer = Streamer(tokenizer, skip_special_tokens=True)
    dec = engine.dec
    budget = ThinkBudget(tokenizer, dec.max_thinking_tokens, opened_in_prompt) if dec.max_thinking_tokens is not None else None
    row = Row(0, list(prompt_ids), budget=budget)
    engine.on_token = lambda _row, token: streamer.put(torch.tensor([token]))
    engine.run([row], lambda _row: None)
    streamer.end()
    return tokenizer.decode(row.out, skip_special_tokens=True), row.stop


def _partial_tag(buf: str, tag: str) -> int:
    """How many characters at the end of `buf` could be the start of `tag` (held back until known)."""
    return next((n for n in range(min(len(tag), len(buf)), 0, -1) if tag.startswith(buf[-n:])), 0)


class ThinkSplitter:
    """Cuts streamed text into ("think" | "answer" | "open" | "close", text) events; a tag may be
    split across pieces. Only the first thinking section counts; after it everything is answer."""

    def __init__(self, opened_in_prompt: bool):
        self.state = "think" if opened_in_prompt else "pre"
        self.buf, self.think = "", ""

    def feed(self, text: str) -> list[tuple[str, str]]:
        self.buf += text
        events = []
        while self.buf:
            tag = {"pre": THINK_OPEN, "think": THINK_CLOSE}.get(self.state, "")  # "": after </think>, no tag to wait for
            kind = "think" if self.state == "think" else "answer"
            i = self.buf.find(tag) if tag else -1
            if i >= 0:
                events += self._emit(kind, self.buf[:i]) + [("open" if tag == THINK_OPEN else "close", "")]
                self.buf, self.state = self.buf[i + len(tag) :], "think" if tag == THINK_OPEN else "post"
                continue
            keep = _partial_tag(self.buf, tag) if tag else 0
            events += self._emit(kind, self.buf[: len(self.buf) - keep])
            self.buf = self.buf[len(self.buf) - keep :]
            break
        return events

    def flush(self) -> list[tuple[str, str]]:
        text, self.buf = self.buf, ""
        return self._emit("think" if self.state == "think" else "answer", text)

    def _emit(self, kind: str, text: str) -> list[tuple[str, str]]:
        if kind == "think":
            self.think += text
        return [(kind, text)] if text else []


class Display:
    """Prints one answer: thinking dimmed, folded to `[thinking: N tokens]`, or raw in plain text."""

    def __init__(self, out, tokenizer, color: bool, hide_thinking: bool):
        self.out, self.tokenizer, self.color, self.hide = out, tokenizer, color, hide_thinking

    def start(self, opened_in_prompt: bool) -> None:
        self.splitter = ThinkSplitter(opened_in_prompt)
        self._write(MODEL_PREFIX)
        if opened_in_prompt:
            self._event("open", "")

    def write(self, text: str) -> None:
        for kind, piece in self.splitter.feed(text):
            self._event(kind, piece)

    def finish(self, note: str = "") -> None:
        for kind, piece in self.splitter.flush():
            self._event(kind, piece)
        if self.splitter.state == "think":  # ran out of tokens (or was stopped) while thinking
            self._event("close", "unfinished")
        self._write("\n" + (note + "\n" if note else ""))

    def _event(self, kind: str, text: str) -> None:
        if kind == "open":
            self._write((DIM + "[thinking ...]" if self.hide else DIM + THINKING_LABEL) if self.color else ("" if self.hide else THINK_OPEN))
        elif kind == "close":
            n = len(tokenize(self.tokenizer, self.splitter.think.strip()))
            placeholder = f"[thinking: {n} tokens{', ' + text if text else ''}]"  # text: "unfinished" or ""
            if self.hide:
                self._write(("\b" * len("[thinking ...]") + "\033[K" + placeholder + RESET) if self.color else placeholder)
            else:
                self._write(RESET + "\n" + ANSWER_LABEL if self.color else ("" if text else THINK_CLOSE))
        elif not (kind == "think" and self.hide):
            self._write(text)

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


def chat_turn(engine, tokenizer, conv: Conversation, user: str, display: Display) -> str | None:
    """One answer, streamed to the display and added to the conversation; None if Ctrl-C stopped it."""
    prompt = conv.prompt(tokenizer, user)
    opened = opens_think(prompt)
    try:
        display.start(opened)
        output, stop = reply(engine, tokenizer, tokenize(tokenizer, prompt), opened, display.write)
    except KeyboardInterrupt:
        display.finish(STOPPED_MESSAGE)
        return None
    display.finish(LOOP_MESSAGE if stop == "loop" else "")
    conv.add(user, output, opened)
    return output


def repl(engine, tokenizer, display: Display, read=input) -> int:
    """Read lines until /exit or EOF; exit code 0."""
    conv = Conversation()
    print(HELP, flush=True)
    while True:
        try:
            line = read(USER_PROMPT).strip()
        except EOFError:
            print(flush=True)
            return 0
        except KeyboardInterrupt:
            print("\n(/exit or Ctrl-D to leave)", flush=True)
            continue
        if line == "/exit":
            return 0
        if line == "/reset":
            conv.reset()
            print(RESET_MESSAGE, flush=True)
        elif line.startswith("/"):
            print(f"Unknown command {line.split()[0]}; the commands are /reset and /exit.", flush=True)
        elif line:
            chat_turn(engine, tokenizer, conv, line, display)


def chat(model_name: str | None, adapter: str | None, s: Decoding, hide_thinking: bool = False, color: bool = True) -> int:
    """`thinktune chat`: load the model (+ adapter, folded in) and talk until /exit; exit code 0.
    One engine for the session: a --seed gives the same conversation again."""
    from .evaluate.batching import Engine
    from .model import load_for_inference
    from .run import base_model_for

    model_name = base_model_for(model_name, adapter)
    print(f"Loading {model_name}{' + ' + adapter if adapter else ''} ...", flush=True)
    model, tokenizer = load_for_inference(model_name, adapter, fold=True)
    if sys.stdin.isatty():
        with suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
    display = Display(sys.stdout, tokenizer, color=color and sys.stdout.isatty(), hide_thinking=hide_thinking)
    return repl(Engine(model, tokenizer, s), tokenizer, display)
