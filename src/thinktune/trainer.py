"""The transformers Trainer as thinktune runs it: its callbacks, its sampler, sealed checkpoints
and the non-finite guard. `train.py` wires these together; nothing here reads the config file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from . import checkpoints
from .errors import UserError
from .evaluate.loss import heldout_loss

# Test hook (issue 6): make the loss of this optimizer step NaN, to exercise the guard end to end.
FAULT_NAN_STEP = "THINKTUNE_FAULT_NAN_STEP"


class TrainingDiverged(UserError):
    """The loss or the gradients stopped being finite numbers; the CLI exits with code 3."""


class MetricsLog(TrainerCallback):
    """Writes one JSON line per log event (train loss, lr, grad norm, tokens/s, eval loss).
    Only the main process writes; on resume the records up to the checkpoint are kept."""

    def __init__(self, path: Path, enabled: bool = True, records: list[dict] | None = None):
        self.path, self.enabled = path, enabled
        self.records: list[dict] = list(records or [])

    def write(self, record: dict) -> None:
        self.records.append(record)
        if self.enabled:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def on_log(self, args, state, control, logs=None, **kw):
        logs = dict(logs or {})
        rec = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        keys = {"loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm", "tokens_per_second": "tokens_per_second"}
        rec.update({new: logs[old] for old, new in keys.items() if old in logs})
        if "loss" in rec:
            self.write(rec)


def read_metrics(path: Path, up_to_step: int) -> list[dict]:
    """The records of a metrics log up to a step; a last line cut short by a crash is dropped."""
    records = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("step", 1 << 62) <= up_to_step:
                records.append(rec)
    return records


class HeldoutEval(TrainerCallback):
    """Held-out loss before training, every eval_steps, and at the end (per-token mean). Every
    process computes it (an FSDP model needs all of them for a forward); only the main one logs.
    `plot(records)` redraws the loss curve after each measurement, so a long run can be watched."""

    def __init__(self, val: list[dict], collator, every: int, batch_size: int, log: MetricsLog, plot=None, last_step: int = -1):
        self.val, self.collator, self.every, self.batch_size, self.log, self.plot = val, collator, every, batch_size, log, plot
        self.last_step = last_step

    def measure(self, model, state) -> None:
        if not self.val or state.global_step == self.last_step:
            return
        self.last_step = state.global_step
        result = heldout_loss(model, self.val, self.collator, self.batch_size)
        self.log.write({"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "eval_loss": result["loss"]})
        if self.plot is not None:
            self.plot(self.log.records)

    def on_train_begin(self, args, state, control, model=None, **kw):
        self.measure(model, state)

    def on_step_end(self, args, state, control, model=None, **kw):
        if self.every and state.global_step % self.every == 0:
            self.measure(model, state)

    def on_train_end(self, args, state, control, model=None, **kw):
        self.measure(model, state)


def _duration(seconds: float) -> str:
    """
    >>> _duration(42.4), _duration(252), _duration(7380)
    ('42s', '4m12s', '2h03m')
    """
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def progress_line(rec: dict, max_steps: int, eta: float | None) -> str:
    """One console line for a step's records (training and/or held-out loss).

    >>> progress_line({"step": 4, "epoch": 0.2857, "loss": 2.33201, "eval_loss": 2.36978, "lr": 0.00095, "tokens_per_second": 125.4}, 42, 252)
    'step 4/42  epoch 0.29  loss 2.3320  held-out 2.3698  lr 9.50e-04  125 tok/s  ETA 4m12s'
    >>> progress_line({"step": 0, "epoch": 0.0, "eval_loss": 2.36978}, 42, None)
    'step 0/42  held-out 2.3698 (before training)'
    """
    parts = [f"step {rec['step']}/{max_steps}"]
    if "loss" in rec:
        parts += [f"epoch {rec['epoch']:.2f}", f"loss {rec['loss']:.4f}"]
    if "eval_loss" in rec:
        parts.append(f"held-out {rec['eval_loss']:.4f}" + (" (before training)" if rec["step"] == 0 else ""))
    if "lr" in rec:
        parts.append(f"lr {rec['lr']:.2e}")
    if "tokens_per_second" in rec:
        parts.append(f"{rec['tokens_per_second']:.0f} tok/s")
    if eta is not None:
        parts.append(f"ETA {_duration(eta)}")
    return "  ".join(parts)


class ConsoleProgress(TrainerCallback):
    """One progress bar and one plain line per logged step, held-out loss on the line of its step.
    Replaces the Trainer's own progress printer, which printed raw dicts (numbers in quotes) into
    the bar and let other lines glue onto it (issue 11). Lines go through tqdm.write, which
    clears the bar first. Reads what MetricsLog recorded, so the console and metrics.jsonl agree."""

    def __init__(self, log: MetricsLog, enabled: bool = True):
        self.log, self.enabled = log, enabled
        self.bar, self.shown, self.start = None, len(log.records), None

    def on_train_begin(self, args, state, control, **kw):
        if self.enabled:
            # disable=None: no bar when the output is not a terminal (CI logs, pipes): the lines remain
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, unit="step", dynamic_ncols=True, disable=None, leave=False)
        self.flush(state, up_to=state.global_step)

    def on_step_begin(self, args, state, control, **kw):
        if self.start is None:
            self.start = (state.global_step, time.perf_counter())

    def on_step_end(self, args, state, control, **kw):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)
        self.flush(state, up_to=state.global_step - 1)  # this step's held-out loss waits for its log line

    def on_log(self, args, state, control, logs=None, **kw):
        self.flush(state, up_to=state.global_step)

    def on_train_end(self, args, state, control, **kw):
        self.flush(state, up_to=state.global_step)
        if self.bar is not None:
            self.bar.close()

    def flush(self, state, up_to: int) -> None:
        """Print the new records of every step up to `up_to`, one line per step."""
        new = self.log.records[self.shown:]
        ready = [r for r in new if r["step"] <= up_to]
        if not ready:
            return
        self.shown += len(ready)
        merged: dict[int, dict] = {}
        for r in ready:
            merged.setdefault(r["step"], {}).update(r)
        for step, rec in sorted(merged.items()):
            if self.enabled:
                tqdm.write(progress_line(rec, state.max_steps, self.eta(state, step)))

    def eta(self, state, step: int) -> float | None:
        if self.start is None or step <= self.start[0] or step >= state.max_steps:
            return None
        per_step = (time.perf_counter() - self.start[1]) / (step - self.start[0])
        return per_step * (state.max_steps - step)


class NonFiniteGuard(TrainerCallback):
    """Stops the run before an optimizer step would apply a NaN/inf gradient, so no checkpoint
    (and no adapter) ever holds the diverged weights."""

    def __init__(self, trainer: "ThinktuneTrainer"):
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        grads = [p.grad.detach().float().abs().sum() for p in model.parameters() if p.requires_grad and p.grad is not None]
        bad = torch.tensor(0.0 if not grads or torch.isfinite(torch.stack(grads).sum()) else 1.0)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)  # FSDP shards differ
        if bad.item():
            raise TrainingDiverged(self.trainer.diverged_message(state.global_step + 1))


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """transformers' length-grouped order, drawn from a generator seeded by (seed + epoch) rather
    than the global RNG, so a resumed run (whose RNG is restored mid-epoch) sees the same order."""

    def __init__(self, batch_size: int, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.generator = torch.Generator().manual_seed(self.seed + int(epoch))


class ThinktuneTrainer(Trainer):
    """Trainer that reports useful tokens/s (the rows' own tokens, pads excluded), seals every
    checkpoint it saves and keeps only the newest `keep` sealed ones."""

    def __init__(self, *a, keep: int | None = None, tokens_seen: int = 0, lengths=None, head=None, causal_only=False, **kw):
        super().__init__(*a, compute_loss_func=head, **kw)
        self.keep, self.lengths, self.head, self.causal_only = keep, lengths, head, causal_only
        self.tokens_seen, self.positions_seen = tokens_seen, 0
        self.bad_loss: tuple[int, float] | None = None
        self._mark = None  # (tokens, time) at the last log; set at the first step, not at start-up
        self.add_callback(NonFiniteGuard(self))
        # our console: one bar, one line per logged step (ConsoleProgress), instead of raw dicts
        self.remove_callback(ProgressCallback)
        self.remove_callback(PrinterCallback)

    def _get_train_sampler(self, train_dataset=None):
        if self.args.train_sampling_strategy == "group_by_length" and self.lengths is not None:
            return SeededLengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps, self.lengths, self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mask = inputs.get("attention_mask")
        if self.causal_only and mask is not None and mask.dim() == 2:
            # the Collator right-pads: the causal mask alone gives the same logits, faster (speed.py)
            inputs = {k: v for k, v in inputs.items() if k != "attention_mask"}
        with self.head.skipped() if self.head is not None else contextlib.nullcontext():
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        if os.environ.get(FAULT_NAN_STEP) == str(self.state.global_step + 1):
            result = (result[0] * float("nan"), result[1]) if return_outputs else result * float("nan")
        return result

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self._mark is None:
            self._mark = (self.tokens_seen, time.perf_counter())
        mask = inputs.get("attention_mask")
        # a packed row (4D block mask, or position ids only) has no padding: every id is a token
        self.tokens_seen += int(mask.sum()) if mask is not None and mask.dim() == 2 else inputs["input_ids"].numel()
        self.positions_seen += inputs["input_ids"].numel()
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.bad_loss is None and not torch.isfinite(loss):
            self.bad_loss = (self.state.global_step + 1, float(loss))
        return loss

    def diverged_message(self, step: int) -> str:
        what = f"the loss became {self.bad_loss[1]}" if self.bad_loss else "the gradient became non-finite (NaN or inf)"
        folder = Path(self.args.output_dir)
        last, _ = checkpoints.latest_complete(folder) if folder.is_dir() else (None, [])
        kept = (
            f"The last good checkpoint is {last}: fix the cause, then run the same command with --resume to continue from it."
            if last else "No checkpoint had been saved yet (train.save_steps), so nothing of this run was kept."
        )
        return (
            f"Training stopped at optimizer step {step}: {what}, so the update was not applied and nothing after it was "
            f"saved. Usual causes: a learning rate too high for this model (train.lr is {self.args.learning_rate:g}), "
            f"fp16 overflow (try model.precision=fp32 or bf16), or a broken row in the data. {kept}"
        )

    def log(self, logs, start_time=None):
        if "loss" in logs:
            tokens, t = self._mark
            now = time.perf_counter()
            logs["tokens_per_second"] = round((self.tokens_seen - tokens) / max(now - t, 1e-9), 1)
            self._mark = (self.tokens_seen, now)
        super().log(logs, start_time)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()  # every process has written its rng_state_<rank>.pth
        if not self.args.should_save:
            return
        run_dir = Path(self._get_output_dir(trial=trial))
        checkpoints.seal(run_dir / f"checkpoint-{self.state.global_step}", {"step": self.state.global_step, "tokens_seen": self.tokens_seen})
        # Rotation by hand: the Trainer's own deletes older checkpoints (ordered by mtime) before
        # the new one is sealed, so a crash then could leave no complete checkpoint at all.
        sealed = [p for p in sorted(run_dir.glob("checkpoint-*"), key=checkpoints.step_of) if (p / checkpoints.SEAL).is_file()]
        if self.keep:
            for old in sealed[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)
