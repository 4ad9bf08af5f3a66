"""The CLI's console: progress events as lines a person reads.

One progress bar (on a terminal only) and one plain line per logged step, the held-out loss on
the line of its step. It replaces the Trainer's own printer, which printed raw dicts (numbers in
quotes) into the bar and let other lines glue onto it (issue 11). Lines go through tqdm.write,
which clears the bar first.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from .events import CheckpointSaved, Event, Failed, Finished, HeldOut, Message, Step

PREFIX = {"info": "", "note": "Note: ", "warning": "Warning: "}


def duration(seconds: float) -> str:
    """
    >>> duration(42.4), duration(252), duration(7380)
    ('42s', '4m12s', '2h03m')
    """
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def progress_line(step: Step | None, heldout: HeldOut | None) -> str:
    """One console line for a step: its training log and/or its held-out loss.

    >>> s = Step(step=4, max_steps=42, epoch=0.2857, loss=2.33201, lr=0.00095, tokens_per_second=125.4, eta_seconds=252)
    >>> progress_line(s, HeldOut(step=4, max_steps=42, loss=2.36978))
    'step 4/42  epoch 0.29  loss 2.3320  held-out 2.3698  lr 9.50e-04  125 tok/s  ETA 4m12s'
    >>> progress_line(None, HeldOut(step=0, max_steps=42, loss=2.36978))
    'step 0/42  held-out 2.3698 (before training)'
    """
    first = step or heldout
    assert first is not None
    parts = [f"step {first.step}/{first.max_steps}"]
    if step is not None and step.loss is not None:
        parts += [f"epoch {step.epoch:.2f}", f"loss {step.loss:.4f}"]
    if heldout is not None:
        parts.append(f"held-out {heldout.loss:.4f}" + (" (before training)" if heldout.step == 0 else ""))
    if step is not None and step.lr is not None:
        parts.append(f"lr {step.lr:.2e}")
    if step is not None and step.tokens_per_second is not None:
        parts.append(f"{step.tokens_per_second:.0f} tok/s")
    if step is not None and step.eta_seconds is not None:
        parts.append(f"ETA {duration(step.eta_seconds)}")
    return "  ".join(parts)


class Console:
    """Prints events. A held-out measurement waits for its step's training line (the Trainer
    measures at the end of a step, before it logs that step) and is printed alone otherwise."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.pending: HeldOut | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, HeldOut):
            self.flush()
            self.pending = event
        elif isinstance(event, Step):
            self.step(event)
        elif isinstance(event, Message):
            self.flush()
            self.write(PREFIX.get(event.level, "") + event.text)
        elif isinstance(event, CheckpointSaved):
            pass  # a checkpoint is routine; --resume names the one it uses
        elif isinstance(event, Finished):
            self.flush()
            self.close()
            if event.text:
                self.write("\n" + event.text)
        elif isinstance(event, Failed):
            self.flush()
            self.close()  # the CLI prints the message itself, after the bar is gone

    def step(self, e: Step) -> None:
        if self.bar is None:
            # disable=None: no bar when the output is not a terminal (CI logs, pipes): the lines remain
            self.bar = tqdm(total=e.max_steps, initial=e.step - 1, unit="step", dynamic_ncols=True, disable=None, leave=False)
        self.bar.update(e.step - self.bar.n)
        if self.pending is not None and self.pending.step != e.step:
            self.flush()
        if e.loss is not None or self.pending is not None:
            self.write(progress_line(e if e.loss is not None else None, self.pending))
            self.pending = None

    def flush(self) -> None:
        if self.pending is not None:
            self.write(progress_line(None, self.pending))
            self.pending = None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def write(self, line: str) -> None:
        tqdm.write(line)
