"""`thinktune chat`: an interactive terminal chat with a model (+ adapter), thinking shown apart.

Generation runs in a thread and streams text through transformers' `TextIteratorStreamer`; the
main thread prints it, so Ctrl-C lands there and stops the answer through a stopping criterion.
Earlier assistant turns are kept without their thinking, as the R1 template expects.
"""

from __future__ import annotations

import sys
import threading
from contextlib import closing, suppress
from dataclasses import dataclass
from typing import Any

from .data.encode import tokenize
from .data.render import THINK_CLOSE, THINK_OPEN, opens_think, render_prompt
from .decoding import Decoding
from .errors import UserError
from .evaluate.extract import split_think

DIM, RESET = "\033[2m", "\033[0m"
FORCED_CLOSE = "\n" + THINK_CLOSE + "\n\n"  # what the thinking budget appends
USER_PROMPT, MODEL_PREFIX = "you> ", "model> "
HELP = "Type a message and press Enter. /reset forgets the conversation, /exit or Ctrl-D leaves, Ctrl-C stops an answer."
RESET_MESSAGE = "[conversation reset: the model no longer sees the earlier turns]"
STOPPED_MESSAGE = "[stopped; this turn is not kept in the conversation]"
_TAIL = 16  # tokens decoded to spot a tag; more than any tokenizer spends on `</think>`


@dataclass
class Settings(Decoding):
    """Decoding, plus a thinking budget: after this many tokens an open <think> is closed."""

    max_thinking_tokens: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_thinking_tokens is not None and self.max_thinking_tokens < 0:
            raise UserError(f"--max-thinking-tokens {self.max_thinking_tokens}: give 0 or more (0 answers at once).")


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


class ThinkingBudget:
    """A transformers LogitsProcessor (duck-typed: the base class only fixes the call signature):
    after `budget` tokens inside an unclosed `<think>`, force the tokens of `\\n</think>\\n\\n`.

    Why a logits processor rather than two generate calls: one `generate` keeps one KV cache, one
    stream and one stop criterion, and the budget is checked at every step whether `<think>` was
    opened by the prompt or written by the model as ordinary tokens. Forcing = every other score
    set to -inf; custom processors run before temperature/top-p, which then keep the forced token.
    Batch size 1 (a chat); a new instance per answer, as it keeps state.
    """

    def __init__(self, tokenizer, prompt_len: int, budget: int, opened_in_prompt: bool):
        self.tokenizer, self.prompt_len, self.budget = tokenizer, prompt_len, budget
        self.close_ids = tokenize(tokenizer, FORCED_CLOSE)
        self.open_at = 0 if opened_in_prompt else None  # index in the generated ids where thinking starts
        self.forced_at: int | None = None
        self.closed = False

    def _tail_has(self, ids: list[int], tag: str) -> bool:
        return tag in self.tokenizer.decode(ids[-_TAIL:], skip_special_tokens=False)

    def __call__(self, input_ids, scores):
        if self.closed:
            return scores
        gen = input_ids[0, self.prompt_len :].tolist()
        if self.forced_at is None:
            if self.open_at is None:
                if not self._tail_has(gen, THINK_OPEN):
                    return scores
                self.open_at = len(gen)  # the last token completed `<think>`
            if self._tail_has(gen[self.open_at :], THINK_CLOSE):
                self.closed = True
                return scores
            if len(gen) - self.open_at < self.budget:
                return scores
            self.forced_at = len(gen)
        k = len(gen) - self.forced_at
        if k >= len(self.close_ids):
            self.closed = True
            return scores
        forced = scores.new_full(scores.shape, float("-inf"))
        forced[:, self.close_ids[k]] = 0.0
        return forced


def generation_kwargs(model, tokenizer, prompt_ids: list[int], s: Settings, opened_in_prompt: bool, stop: threading.Event | None = None) -> dict:
    """The `model.generate` arguments for one answer: the budget processor, and a stopping
    criterion that ends generation once `stop` is set (Ctrl-C in the main thread)."""
    import torch
    from transformers import LogitsProcessorList, StoppingCriteriaList

    stop = stop or threading.Event()
    device = next(model.parameters()).device
    budget = [ThinkingBudget(tokenizer, len(prompt_ids), s.max_thinking_tokens, opened_in_prompt)] if s.max_thinking_tokens is not None else []
    sampling: dict[str, Any] = {"do_sample": True, "temperature": s.temperature, "top_p": s.top_p} if s.temperature > 0 else {"do_sample": False}
    sampling["repetition_penalty"] = s.repetition_penalty
    return dict(
        input_ids=torch.tensor([prompt_ids], device=device),
        attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long, device=device),
        max_new_tokens=s.max_new_tokens,
        logits_processor=LogitsProcessorList(budget),
        stopping_criteria=StoppingCriteriaList([lambda ids, scores, **kw: torch.full((ids.shape[0],), stop.is_set(), dtype=torch.bool, device=ids.device)]),
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **sampling,
    )


def stream_reply(model, tokenizer, prompt_ids: list[int], s: Settings, opened_in_prompt: bool):
    """Yield the answer's text as it is generated; closing the generator stops the generation."""
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    stop, errors = threading.Event(), []
    kwargs = generation_kwargs(model, tokenizer, prompt_ids, s, opened_in_prompt, stop)

    def work():
        try:
            model.generate(**kwargs, streamer=streamer)
        except BaseException as e:  # re-raised in the main thread; end() unblocks the reader
            errors.append(e)
            streamer.end()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield from streamer
    finally:
        stop.set()
        thread.join()
    if errors:
        raise errors[0]


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
            self._write((DIM + "[thinking ...]" if self.hide else DIM) if self.color else ("" if self.hide else THINK_OPEN))
        elif kind == "close":
            n = len(tokenize(self.tokenizer, self.splitter.think.strip()))
            placeholder = f"[thinking: {n} tokens{', ' + text if text else ''}]"  # text: "unfinished" or ""
            if self.hide:
                self._write(("\b" * len("[thinking ...]") + "\033[K" + placeholder + RESET) if self.color else placeholder)
            else:
                self._write(RESET if self.color else ("" if text else THINK_CLOSE))
        elif not (kind == "think" and self.hide):
            self._write(text)

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


def chat_turn(model, tokenizer, conv: Conversation, user: str, s: Settings, display: Display) -> str | None:
    """One answer, streamed to the display and added to the conversation; None if Ctrl-C stopped it."""
    prompt = conv.prompt(tokenizer, user)
    opened = opens_think(prompt)
    pieces: list[str] = []
    try:
        display.start(opened)
        with closing(stream_reply(model, tokenizer, tokenize(tokenizer, prompt), s, opened)) as stream:
            for piece in stream:
                pieces.append(piece)
                display.write(piece)
    except KeyboardInterrupt:
        display.finish(STOPPED_MESSAGE)
        return None
    display.finish()
    output = "".join(pieces)
    conv.add(user, output, opened)
    return output


def repl(model, tokenizer, s: Settings, display: Display, read=input) -> int:
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
            chat_turn(model, tokenizer, conv, line, s, display)


def chat(model_name: str | None, adapter: str | None, s: Settings, hide_thinking: bool = False, color: bool = True) -> int:
    """`thinktune chat`: load the model (+ adapter) and talk until /exit; exit code 0."""
    import torch

    from .model import load_for_inference
    from .run import base_model_for

    model_name = base_model_for(model_name, adapter)
    print(f"Loading {model_name}{' + ' + adapter if adapter else ''} ...", flush=True)
    model, tokenizer = load_for_inference(model_name, adapter)
    if s.seed is not None:
        torch.manual_seed(s.seed)
    if sys.stdin.isatty():
        with suppress(ImportError):
            import readline  # noqa: F401  (line editing and history for input())
    display = Display(sys.stdout, tokenizer, color=color and sys.stdout.isatty(), hide_thinking=hide_thinking)
    return repl(model, tokenizer, s, display)
