"""The transformers Trainer as thinktune runs it: its callbacks (held-out loss, progress events,
the non-finite guard), its seeded sampler, its loss strategy and sealed checkpoints. A stage
(sft.py) wires these together; nothing here reads the config file."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import torch
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from . import checkpoints
from .errors import TrainingDiverged
from .evaluate.loss import heldout_loss
from .events import CheckpointSaved, HeldOut, Step
from .speed import Loss


class HeldoutEval(TrainerCallback):
    """Held-out loss before training, every eval_steps, and at the end (per-token mean). Every
    process computes it (an FSDP model needs all of them for a forward); only the main one writes.
    The loss curve is redrawn after each measurement, so a long run can be watched."""

    def __init__(self, run, val: list[dict], collator, every: int, batch_size: int):
        self.run, self.val, self.collator, self.every, self.batch_size = run, val, collator, every, batch_size
        self.last_step = run.start_step

    def measure(self, model, state) -> None:
        if not self.val or state.global_step == self.last_step:
            return
        self.last_step = state.global_step
        loss = heldout_loss(model, self.val, self.collator, self.batch_size)["loss"]
        self.run.record({"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "eval_loss": loss})
        self.run.emit(HeldOut(state.global_step, state.max_steps, loss))
        self.run.plot()

    def on_train_begin(self, args, state, control, model=None, **kw):
        self.measure(model, state)

    def on_step_end(self, args, state, control, model=None, **kw):
        if self.every and state.global_step % self.every == 0:
            self.measure(model, state)

    def on_train_end(self, args, state, control, model=None, **kw):
        self.measure(model, state)


class Progress(TrainerCallback):
    """The Trainer's logs as metrics.jsonl records and progress events: a Step event for every
    optimizer step (with loss, lr, grad norm and tokens/s on logged steps) and one per sealed
    checkpoint. Registered after HeldoutEval, so a step's held-out loss comes before its Step."""

    KEYS = {"loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm", "tokens_per_second": "tokens_per_second"}

    def __init__(self, run):
        self.run, self.start = run, None

    def on_step_begin(self, args, state, control, **kw):
        if self.start is None:
            self.start = (state.global_step, time.perf_counter())

    def on_step_end(self, args, state, control, **kw):
        if not control.should_log:  # a logged step is reported by on_log, with its numbers
            self.run.emit(Step(state.global_step, state.max_steps, round(state.epoch or 0.0, 4), eta_seconds=self.eta(state)))

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if "loss" not in logs:
            return  # the Trainer's closing log (runtime, samples/s): summary.json says it
        rec = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        rec.update({new: logs[old] for old, new in self.KEYS.items() if old in logs})
        self.run.record(rec)
        self.run.emit(
            Step(rec["step"], state.max_steps, rec["epoch"], rec["loss"], rec.get("lr"), rec.get("grad_norm"), rec.get("tokens_per_second"), self.eta(state))
        )

    def on_save(self, args, state, control, **kw):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if (folder / checkpoints.SEAL).is_file():
            self.run.emit(CheckpointSaved(state.global_step, str(folder)))

    def eta(self, state) -> float | None:
        step = state.global_step
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
    """Trainer that computes the loss the way `loss` says, reports useful tokens/s (the rows' own
    tokens, pads excluded), seals every checkpoint it saves and keeps only the newest `keep`."""

    def __init__(self, *a, loss: Loss, keep: int | None = None, tokens_seen: int = 0, lengths=None, **kw):
        kw["compute_loss_func"] = loss if loss.kind == "head_on_labels" else None  # the Trainer's hook for a custom loss
        super().__init__(*a, **kw)
        self.loss, self.keep, self.lengths = loss, keep, lengths
        self.tokens_seen, self.positions_seen = tokens_seen, 0
        self.bad_loss: tuple[int, float] | None = None
        self._mark: tuple[int, float] | None = None  # (tokens, time) at the last log; set at the first step, not at start-up
        self.add_callback(NonFiniteGuard(self))
        # our console: one bar, one line per logged step (console.py), instead of raw dicts
        self.remove_callback(ProgressCallback)
        self.remove_callback(PrinterCallback)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        return super().compute_loss(model, self.loss.model_inputs(inputs), return_outputs, num_items_in_batch)

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
        folder = Path(self.args.output_dir or ".")
        last, _ = checkpoints.latest_complete(folder) if folder.is_dir() else (None, [])
        kept = (
            f"The last good checkpoint is {last}: fix the cause, then run the same command with --resume to continue from it."
            if last
            else "No checkpoint had been saved yet (train.save_steps), so nothing of this run was kept."
        )
        return (
            f"Training stopped at optimizer step {step}: {what}, so the update was not applied and nothing after it was "
            f"saved. Usual causes: a learning rate too high for this model (train.lr is {self.args.learning_rate:g}), "
            f"fp16 overflow (try model.precision=fp32 or bf16), or a broken row in the data. {kept}"
        )

    def log(self, logs, start_time=None):
        if "loss" in logs and self._mark is not None:
            tokens, t = self._mark
            now = time.perf_counter()
            logs["tokens_per_second"] = round((self.tokens_seen - tokens) / max(now - t, 1e-9), 1)
            self._mark = (self.tokens_seen, now)
        super().log(logs, start_time)

    # --- Private Trainer methods, overridden. Checked against transformers 5.24.0: re-check ----
    # --- their signatures and what they do when upgrading (tests/test_trainer.py covers both). --

    def _get_train_sampler(self, train_dataset=None):
        # The length-grouped order drawn from a seeded generator: resume sees the same order.
        if self.args.train_sampling_strategy == "group_by_length" and self.lengths is not None:
            return SeededLengthGroupedSampler(self.args.train_batch_size * self.args.gradient_accumulation_steps, self.lengths, self.args.seed)
        return super()._get_train_sampler(train_dataset)

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
