"""Compare and chat: base and tuned answers to one question, side by side, streamed, the thinking
folded (a Chatbot message with a title is shown collapsed); and `thinktune compare` started as a
subprocess whose report is shown inline when it ends."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from pathlib import Path

from ..chat import ThinkSplitter, reply
from ..data.encode import tokenize
from ..data.render import opens_think, render_prompt
from ..decoding import Decoding
from ..errors import UserError
from .jobs import child_env
from .page import Page
from .text import tr


def models_for(page: Page, run: str):
    """(base model, tuned model, tokenizer) of a run, loaded once per run (the adapter folded in)."""
    from ..model import load_for_inference
    from ..run import base_model_of

    folder = page.path(run)
    with page.lock:
        if run not in page.models:
            base = base_model_of(folder)
            base_name = str(page.path(base)) if page.path(base).exists() else base
            plain, tokenizer = load_for_inference(base_name, None)
            tuned, _ = load_for_inference(base_name, str(folder), fold=True)
            page.models.clear()  # one run's pair in memory at a time
            page.models[run] = (plain, tuned, tokenizer)
        return page.models[run]


def messages(question: str, thinking: str, answer: str, lang: str, done: bool) -> list[dict]:
    """The Chatbot's messages for one turn: the thinking as a folded message, then the answer."""
    out: list[dict] = [{"role": "user", "content": question}]
    if thinking.strip():
        out.append({"role": "assistant", "content": thinking.strip(), "metadata": {"title": tr(lang, "thinking"), "status": "done" if done else "pending"}})
    out.append({"role": "assistant", "content": answer.strip() or ("…" if not done else tr(lang, "no_answer"))})
    return out


def stream_answer(model, tokenizer, question: str, dec: Decoding):
    """Yield (thinking, answer, done) as the model writes (the engine runs in a thread)."""
    from ..evaluate.batching import Engine

    prompt = render_prompt(tokenizer, [{"role": "user", "content": question}])
    opened = opens_think(prompt)
    pieces: queue.Queue = queue.Queue()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            reply(Engine(model, tokenizer, dec), tokenizer, tokenize(tokenizer, prompt), opened, pieces.put)
        except BaseException as e:  # shown in the page, not lost in a thread
            failure.append(e)
        pieces.put(None)

    threading.Thread(target=run, daemon=True).start()
    split, thinking, answer = ThinkSplitter(opened), "", ""
    while (piece := pieces.get()) is not None:
        for kind, text in split.feed(piece):
            thinking, answer = (thinking + text, answer) if kind == "think" else (thinking, answer + text if kind == "answer" else answer)
        yield thinking, answer, False
    if failure:
        raise failure[0]
    for kind, text in split.flush():
        thinking, answer = (thinking + text, answer) if kind == "think" else (thinking, answer + text)
    yield thinking, answer, True


def side_by_side(page: Page, run: str, question: str, max_new_tokens: int, temperature: float, lang: str):
    """Yield (base messages, tuned messages): the base answers first, then the fine-tune."""
    if not run:
        raise UserError(tr(lang, "pick_run"))
    if not question.strip():
        raise UserError(tr(lang, "type_question"))
    plain, tuned, tokenizer = models_for(page, run)
    dec = Decoding(max_new_tokens=int(max_new_tokens), temperature=float(temperature), batch_size=1, seed=0)
    base_msgs: list[dict] = []
    for thinking, answer, done in stream_answer(plain, tokenizer, question, dec):
        base_msgs = messages(question, thinking, answer, lang, done)
        yield base_msgs, []
    for thinking, answer, done in stream_answer(tuned, tokenizer, question, dec):
        yield base_msgs, messages(question, thinking, answer, lang, done)


def heldout_question(page: Page, run: str, index: int) -> str:
    """A held-out question of the run (the split its own config makes: never trained on)."""
    from ..run import run_config
    from .page import check_data

    cfg = run_config(page.path(run))
    if cfg is None:
        raise UserError(f"{run} has no config.yaml: its held-out rows are not known.")
    prepared, _ = check_data(page, cfg)
    if not prepared.val:
        raise UserError(f"{run} held no rows out (data.val_fraction=0).")
    return prepared.val[int(index) % len(prepared.val)]["question"]


class CompareJob:
    """`thinktune compare` of a run against its base, in its own process; the report when done."""

    def __init__(self, page: Page, run: str, bench: str, limit: int, max_new_tokens: int):
        self.out = Path(run).parent / f"{Path(run).name}_compare_{bench}"
        self.command = [
            "thinktune",
            "compare",
            "--adapter",
            run,
            "--bench",
            bench,
            "--limit",
            str(int(limit)),
            "--max-new-tokens",
            str(int(max_new_tokens)),
            "--out",
            str(self.out),
            "--overwrite",
        ]
        self.page = page
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "thinktune", *self.command[1:]],
            cwd=page.workspace,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=child_env(),
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def status(self) -> tuple[bool, str, str]:
        """(done, console tail, report.md once written)."""
        done = self.proc.poll() is not None
        report = self.page.path(self.out) / "report.md"
        return done, "\n".join(self.lines[-30:]), report.read_text(encoding="utf-8") if done and report.is_file() else ""
