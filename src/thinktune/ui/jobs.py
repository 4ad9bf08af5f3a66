"""The page's training runs: each a `thinktune train --config FILE --events json` subprocess.

Why a subprocess and not a thread: the page stays responsive, a crash of the run (or of torch)
does not take the page down, and the run writes exactly the run folder the same command gives in
a shell (the page shows that command). Closing the browser does not stop it; Stop sends SIGTERM,
which the trainer turns into a clean stop with a sealed checkpoint (trainer.StopOnSignal).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..events import CheckpointSaved, Failed, Finished, HeldOut, Message, Started, Step, from_json


def train_argv(config_path: str | Path, resume: bool = False) -> list[str]:
    """The shell command a page run amounts to (the page adds `--events json` to read it)."""
    return ["thinktune", "train", "--config", str(config_path), *(["--resume"] if resume else [])]


@dataclass
class JobView:
    """What the page shows of a run: its state, the last step and the curves so far."""

    state: str = "starting"  # starting | running | stopping | finished | stopped | failed
    step: int = 0
    max_steps: int = 0
    tokens_per_second: float | None = None
    eta_seconds: float | None = None
    first_loss_seconds: float | None = None  # from Start to the first loss point (issue 16's figure)
    losses: list[tuple[int, float]] = field(default_factory=list)
    heldout: list[tuple[int, float]] = field(default_factory=list)
    lrs: list[tuple[int, float]] = field(default_factory=list)
    grad_norms: list[tuple[int, float]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    result: str = ""  # the Finished text or the Failed paragraph


class Job:
    """One run of the page: started at construction, watched by reader threads."""

    def __init__(self, config_path: Path, out: Path, workspace: Path, resume: bool = False):
        self.config_path, self.out, self.resume = config_path, out, resume
        self.command = train_argv(config_path, resume)
        self.view = JobView()
        self.final: tuple[str, str] | None = None  # what the Finished / Failed event said, shown when the process has ended
        self.lines: deque[str] = deque(maxlen=400)
        self.started = time.perf_counter()
        self.lock = threading.Lock()
        argv = [sys.executable, "-m", "thinktune", *self.command[1:], "--events", "json"]
        # Its own session: a Ctrl-C in the page's terminal does not reach the run; Stop does.
        self.proc = subprocess.Popen(
            argv, cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8", start_new_session=True, env=child_env()
        )
        self.readers = [threading.Thread(target=self._read_events, daemon=True), threading.Thread(target=self._read_console, daemon=True)]
        for t in self.readers:
            t.start()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        """A clean stop: the step in flight ends, a checkpoint is sealed, the run exits 130."""
        if self.alive:
            with self.lock:
                self.view.state = "stopping"
            os.kill(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout: float | None = None) -> int:
        code = self.proc.wait(timeout)
        for t in self.readers:
            t.join(timeout)
        return code

    def snapshot(self) -> JobView:
        with self.lock:
            v = self.view
            return JobView(
                **{
                    **v.__dict__,
                    "losses": list(v.losses),
                    "heldout": list(v.heldout),
                    "lrs": list(v.lrs),
                    "grad_norms": list(v.grad_norms),
                    "lines": list(self.lines),
                }
            )

    def _read_events(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = from_json(line)
            except (ValueError, KeyError, TypeError):
                self._say(line.rstrip())  # not an event: a library printed to stdout
                continue
            with self.lock:
                self._apply(event)
        code = self.proc.wait()
        with self.lock:  # the final state only once the process is gone: a Resume may follow at once
            v = self.view
            v.state, v.result = self.final or ("failed", f"the run ended with exit code {code} and no message; see the console lines.")

    def _apply(self, e) -> None:
        v = self.view
        if isinstance(e, Started):
            v.state = "running" if v.state != "stopping" else v.state
        elif isinstance(e, Step):
            v.step, v.max_steps = e.step, e.max_steps
            v.eta_seconds = e.eta_seconds
            if e.tokens_per_second is not None:
                v.tokens_per_second = e.tokens_per_second
            if e.loss is not None:
                if v.first_loss_seconds is None:
                    v.first_loss_seconds = round(time.perf_counter() - self.started, 1)
                v.losses.append((e.step, e.loss))
            for series, value in ((v.lrs, e.lr), (v.grad_norms, e.grad_norm)):
                if value is not None:
                    series.append((e.step, value))
        elif isinstance(e, HeldOut):
            v.heldout.append((e.step, e.loss))
            v.max_steps = e.max_steps
        elif isinstance(e, CheckpointSaved):
            self.lines.append(f"checkpoint saved at step {e.step}: {e.path}")
        elif isinstance(e, Message):
            self.lines.append(f"{e.level}: {e.text}" if e.level != "info" else e.text)
        elif isinstance(e, Finished):
            self.final = ("finished", e.text)
        elif isinstance(e, Failed):
            self.final = ("stopped" if e.exit_code == 130 else "failed", e.message)

    def _read_console(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._say(line.rstrip())

    def _say(self, line: str) -> None:
        if line.strip():
            with self.lock:
                self.lines.append(line)


def child_env() -> dict:
    env = dict(os.environ)
    env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # its stderr is read line by line, not a terminal
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Jobs:
    """The runs this page started, one per run folder: a second Start into a folder whose run is
    still going is refused here (and by the run's own lock, for runs started elsewhere)."""

    def __init__(self, workspace: Path):
        self.workspace = workspace
        self.by_out: dict[Path, Job] = {}
        self.latest: Job | None = None

    def start(self, config_path: Path, out: Path, resume: bool = False) -> Job:
        key = (self.workspace / out).resolve()
        running = self.by_out.get(key)
        if running is not None and running.alive:
            raise UserError(f"A run into {out} is already going (started from this page); stop it first or choose another train.output_dir.")
        job = Job(config_path, out, self.workspace, resume)
        self.by_out[key] = self.latest = job
        return job
