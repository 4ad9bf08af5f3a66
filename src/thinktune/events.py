"""Progress events: what a stage says while it runs, as typed values.

`thinktune.train(config, on_event=...)` (and `evaluate_model`, `compare`) call `on_event` with each
event. The CLI's console (`Console`) is one consumer; `thinktune train --events json` prints them
as JSON lines (`JsonLines`), which is how the web page watches a run it starts in a subprocess:
the same events, the same run folder as a run started from the shell.

>>> e = Step(step=3, max_steps=12, epoch=0.5, loss=2.25)
>>> line = e.to_json()
>>> line
'{"event": "step", "step": 3, "max_steps": 12, "epoch": 0.5, "loss": 2.25, "lr": null, "grad_norm": null, "tokens_per_second": null, "eta_seconds": null}'
>>> from_json(line) == e
True
"""

from __future__ import annotations

import errno
import json
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, ClassVar, TextIO

from .atomic import dumps


@dataclass
class Event:
    kind: ClassVar[str] = ""

    def to_dict(self) -> dict:
        return {"event": self.kind, **asdict(self)}

    def to_json(self) -> str:
        return dumps(self.to_dict())  # standard JSON: a NaN loss is null


@dataclass
class Started(Event):
    """A stage began writing `run_dir` (a resumed run says from which optimizer step)."""

    kind: ClassVar[str] = "started"
    stage: str
    run_dir: str
    resumed_from_step: int | None = None


@dataclass
class Message(Event):
    """One line for a person: what was chosen and why (`info`), a side remark (`note`), or
    something that may make the result worse than expected (`warning`)."""

    kind: ClassVar[str] = "message"
    text: str
    level: str = "info"


@dataclass
class Step(Event):
    """An optimizer step finished; loss, lr, grad_norm and tokens/s are set on logged steps
    (train.logging_steps), None between them. eta_seconds: the time left at this step's pace."""

    kind: ClassVar[str] = "step"
    step: int
    max_steps: int
    epoch: float
    loss: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_second: float | None = None
    eta_seconds: float | None = None


@dataclass
class HeldOut(Event):
    """Held-out loss (per token, answer part) measured after `step` optimizer steps (0 = before)."""

    kind: ClassVar[str] = "heldout"
    step: int
    max_steps: int
    loss: float


@dataclass
class CheckpointSaved(Event):
    """A checkpoint was written and sealed: `--resume` can continue from it."""

    kind: ClassVar[str] = "checkpoint"
    step: int
    path: str


@dataclass
class Finished(Event):
    """The stage is complete: `run_dir` holds everything, `summary` is its summary.json and
    `text` says the same in a few sentences."""

    kind: ClassVar[str] = "finished"
    run_dir: str
    summary: dict = field(default_factory=dict)
    text: str = ""


@dataclass
class Failed(Event):
    """The stage stopped; `message` is the paragraph the CLI prints, `exit_code` what it returns
    (2 bad input, 3 training diverged, 130 interrupted, 1 anything else)."""

    kind: ClassVar[str] = "failed"
    message: str
    exit_code: int = 2


KINDS: dict[str, type[Event]] = {c.kind: c for c in (Started, Message, Step, HeldOut, CheckpointSaved, Finished, Failed)}
OnEvent = Callable[[Event], Any]


def from_json(line: str) -> Event:
    """The event a `to_json` line holds (what a page reads from a run's subprocess)."""
    data = json.loads(line)
    cls = KINDS[data.pop("event")]
    return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS)  # a full or unwritable disk: the user's to fix


def failure(error: BaseException) -> Failed:
    """The Failed event for an exception that ends a stage: the message and exit code the CLI
    gives (2 bad input or an unwritable disk, 3 training diverged, 130 interrupted, 1 a bug)."""
    from .errors import UserError

    if isinstance(error, KeyboardInterrupt):
        return Failed(str(error) or "interrupted; nothing was written.", 130)
    if isinstance(error, UserError):
        return Failed(str(error), error.exit_code)
    if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
        return Failed(
            f"cannot write {error.filename or 'the output'}: {error.strerror}. Nothing half-written was published; "
            "free some space or choose a writable --out, then run again (with --resume if a checkpoint was saved).",
            2,
        )
    return Failed(f"{type(error).__name__}: {error}", 1)


@contextmanager
def reporting(on_event: OnEvent, stage: str, out: str):
    """Started when the block begins, Failed if it raises (the error still propagates)."""
    on_event(Started(stage, out))
    try:
        yield
    except BaseException as e:
        on_event(failure(e))
        raise


def ignore(event: Event) -> None:
    """The consumer that drops every event."""


class JsonLines:
    """Writes every event as one JSON line (flushed, so a reader sees it at once)."""

    def __init__(self, stream: TextIO | None = None):
        self.stream = stream

    def __call__(self, event: Event) -> None:
        stream = self.stream or sys.stdout
        stream.write(event.to_json() + "\n")
        stream.flush()
