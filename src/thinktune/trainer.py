"""The transformers Trainer as thinktune runs it: its callbacks (held-out loss, progress events,
the non-finite guard), its seeded sampler, its loss strategy and sealed checkpoints. A stage
(sft.py) wires these together; nothing here reads the config file."""

from __future__ import annotations

import math
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch
from transformers import PrinterCallback, ProgressCallback, Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler

from . import checkpoints
from .data.encode import IGNORE_INDEX
from .errors import TrainingDiverged
from .evaluate.loss import heldout_loss
from .events import CheckpointSaved, HeldOut, Step
from .speed import Loss


class HeldoutEval(TrainerCallback):
    """Held-out loss before training, every eval_steps, and at the end (per-token mean). Every
    process computes it (an FSDP model needs all of them for a forward); only the main one writes.
    The loss curve is redrawn after each measurement, so a long run can be watched."""

    def __init__(self, run, val: list[dict], collator, every: int, batch_size: int):
        self.run, self.collator, self.every, self.batch_size = run, collator, every, batch_size
        # rows cut to nothing labelled measure no loss: 0/0 would read 0.0 (issue 13); the data report warns
        self.val = val if any(x != IGNORE_INDEX for e in val for x in e["labels"]) else []
        self.last_step = run.start_step
        self.report: Callable[[dict], None] | None = None  # Trainer.log, when train.report_to names trackers

    def measure(self, model, state) -> None:
        if not self.val or state.global_step == self.last_step:
            return
        self.last_step = state.global_step
        loss = heldout_loss(model, self.val, self.collator, self.batch_size)["loss"]
        limit = loss_limit(model.config.vocab_size, self.run.records)
        if not (math.isfinite(loss) and loss <= limit) and state.global_step > 0:
            what = f"the held-out loss became {loss:g}" + (f", above {limit:.2f} {LIMIT_WORDS}" if math.isfinite(loss) else "")
            raise divergence_error(self.run.checkpoints, self.run.cfg.train.lr, state.global_step, what, state.global_step - 1, self.run.main)
        self.run.record({"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "eval_loss": loss})
        self.run.emit(HeldOut(state.global_step, state.max_steps, loss))
        if self.report is not None:
            self.report({"eval_loss": loss})
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


class StopOnSignal(TrainerCallback):
    """SIGTERM asks the run to stop cleanly (issue 16: the web page's Stop button, a scheduler's
    preemption): the step in flight finishes, a checkpoint is saved and sealed, and the run ends
    as an interruption that keeps it (exit 130, `--resume` continues from it). A second SIGTERM
    stops at once. Installed only in the main thread of a single-process run: under torchrun the
    launcher's SIGTERM must end every process together, not start a save that waits for the others."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self.previous: Any = None

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def on_train_begin(self, args, state, control, **kw):
        if self.enabled:
            self.previous = signal.signal(signal.SIGTERM, self._handle)

    def on_step_end(self, args, state, control, **kw):
        if self.requested:
            control.should_save = True  # saved (and sealed) by the Trainer right after this step

    def on_save(self, args, state, control, **kw):
        if self.requested:
            raise KeyboardInterrupt  # Run keeps the sealed checkpoint and says how to resume

    def on_train_end(self, args, state, control, **kw):
        self.restore()

    def restore(self) -> None:
        if self.enabled and self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
            self.previous = None


def _finite(tensors, bad_here: bool = False) -> bool:
    """All finite (and nothing else bad here), agreed by every process: FSDP shards differ, and a
    process that stopped alone would leave the others waiting at their next collective forever."""
    sums = [t.detach().float().abs().sum() for t in tensors]
    bad = torch.tensor(0.0 if not bad_here and (not sums or torch.isfinite(torch.stack(sums).sum())) else 1.0)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(bad, op=torch.distributed.ReduceOp.MAX)
    return not bad.item()


LIMIT_WORDS = "(three times the held-out loss before training, and at least 2 more; at most twice the loss of a uniform guess)"


def loss_limit(vocab_size: int | None, records: list[dict]) -> float:
    """The loss above which a run has diverged, not just had a bad batch: three times the held-out
    loss measured before training, and in any case twice the loss of guessing uniformly over the
    vocabulary (issue 13: lr=1e6 took the held-out loss from 2.6 to 16.6, finite, and its checkpoint
    was called good)."""
    limit = 2 * math.log(vocab_size) if vocab_size else math.inf
    start = next((r["eval_loss"] for r in records if "eval_loss" in r), None)
    # + 2 nats at least (7x the perplexity): a base that starts low (0.4) may see a batch at 3x
    return min(limit, max(3 * start, start + 2)) if start is not None and math.isfinite(start) and start > 0 else limit


def divergence_error(folder: Path, lr: float, step: int, what: str, sane_through: int, main: bool = True) -> TrainingDiverged:
    """The error that ends a diverged run. Checkpoints newer than the last weights known to give a
    sane loss are removed, so --resume continues from a good one (issue 13: one saved from wrecked
    but finite weights made the advice fail again at the next step)."""
    for old in folder.glob("checkpoint-*") if main else ():
        if checkpoints.step_of(old) > sane_through:
            shutil.rmtree(old, ignore_errors=True)
    last, _ = checkpoints.latest_complete(folder) if folder.is_dir() else (None, [])
    kept = (
        f"The last good checkpoint is {last}: fix the cause (e.g. a lower train.lr), then run the same command with --resume to continue from it."
        if last
        else "No good checkpoint had been saved (train.save_steps), so nothing of this run was kept."
    )
    return TrainingDiverged(
        f"Training stopped at optimizer step {step}: {what}, so that update was not saved. Usual causes: a learning rate too high "
        f"for this model (train.lr is {lr:g}), fp16 overflow (try model.precision=fp32 or bf16), or a broken row in the data. {kept}"
    )


class NonFiniteGuard(TrainerCallback):
    """Stops the run before a bad update is applied or saved (issues 6, 13): a loss that is not a
    finite, sane number (loss_limit), a non-finite gradient, or an update that
    left a weight non-finite. Registered first, so nothing measures or saves such weights."""

    def __init__(self):
        self.trainer: Any = None  # a ThinktuneTrainer, or rl's trainer: bad_loss, sane_through, diverged()

    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        assert self.trainer is not None
        if not _finite((p.grad for p in model.parameters() if p.requires_grad and p.grad is not None), self.trainer.bad_loss is not None):
            raise self.trainer.diverged(state.global_step + 1)
        self.trainer.sane_through = state.global_step  # the weights after it gave this step a sane loss

    def on_step_end(self, args, state, control, model=None, **kw):
        assert self.trainer is not None
        if not _finite(p for p in model.parameters() if p.requires_grad):
            raise self.trainer.diverged(state.global_step, "the update made adapter weights non-finite (NaN or inf)")


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

    def __init__(self, *a, loss: Loss, run=None, keep: int | None = None, lengths=None, loraplus: float | None = None, pissa_init: str | None = None, **kw):
        kw["compute_loss_func"] = loss if loss.kind == "head_on_labels" else None  # the Trainer's hook for a custom loss
        super().__init__(*a, **kw)
        self.loss, self.keep, self.lengths = loss, keep, lengths
        self.loraplus, self.pissa_init = loraplus, pissa_init
        # a resumed run (run.Run) goes on counting tokens, and vouching for checkpoints, where it stopped
        self.tokens_seen, self.positions_seen = (run.resumed_tokens if run else 0), 0
        self._loss_step = -1
        self.bad_loss: tuple[int, float] | None = None
        self.step_loss = 0.0  # the loss of optimizer step _loss_step so far (its micro-batch losses add up to it)
        self.sane_through = run.start_step if run else -1  # the newest step whose weights gave a sane loss: its checkpoint is good
        self.vocab_size = getattr(getattr(self.model, "config", None), "vocab_size", None)
        self.records = run.records if run else []  # the run's metrics so far (its held-out loss before training sets the loss limit)
        self._mark: tuple[int, float] | None = None  # (tokens, time) at the last log; set at the first step, not at start-up
        guard = NonFiniteGuard()
        guard.trainer = self
        self.callback_handler.callbacks.insert(0, guard)  # before HeldoutEval and the checkpoint save
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
        step = self.state.global_step + 1
        if self._loss_step != step:
            self.step_loss, self._loss_step = 0.0, step
        self.step_loss += float(loss)
        if self.bad_loss is None and not (math.isfinite(self.step_loss) and self.step_loss <= loss_limit(self.vocab_size, self.records)):
            self.bad_loss = (step, self.step_loss)
        return loss

    def diverged(self, step: int, what: str | None = None) -> TrainingDiverged:
        if what is None and self.bad_loss:
            loss = self.bad_loss[1]
            limit = loss_limit(self.vocab_size, self.records)
            what = f"the loss became {loss:g}" + (f", above {limit:.2f} {LIMIT_WORDS}" if math.isfinite(loss) else "")
        what = what or "the gradient became non-finite (NaN or inf)"
        return divergence_error(Path(self.args.output_dir or "."), self.args.learning_rate, step, what, self.sane_through, self.args.should_save)

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

    def _load_optimizer_and_scheduler(self, checkpoint):
        # --resume: the checkpoint restores AdamW's moments and the schedule's position, but also the
        # old learning rate and weight decay; the settings of this run win, from its next step on
        # (issue 13: a changed train.lr was recorded and then ignored).
        optimizer, sched = self.optimizer, self.lr_scheduler
        if checkpoint is None or optimizer is None or not isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
            return super()._load_optimizer_and_scheduler(checkpoint)  # DeepSpeed's own scheduler: as saved
        fresh: list[dict[str, Any]] = [{k: g[k] for k in ("initial_lr", "weight_decay") if k in g} for g in optimizer.param_groups]
        base_lrs = list(sched.base_lrs)
        super()._load_optimizer_and_scheduler(checkpoint)
        for group, settings in zip(optimizer.param_groups, fresh):
            group.update(settings)
        sched.base_lrs = base_lrs
        for group, base, factor in zip(optimizer.param_groups, base_lrs, sched.lr_lambdas):
            group["lr"] = base * factor(sched.last_epoch)  # what LambdaLR.step sets
        sched._last_lr = [group["lr"] for group in optimizer.param_groups]

    def create_optimizer(self, model=None):
        """LoRA+ (lora.loraplus_lr_ratio): PEFT's optimizer with B matrices at ratio x the rate, built
        from the optimizer class and settings the Trainer would use; the scheduler scales each group."""
        if self.optimizer is None and self.loraplus:
            from peft.optimizers import create_loraplus_optimizer

            opt_model: Any = self.model if model is None else model  # a PeftModel: add_lora made it
            cls, kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            kwargs.pop("lr", None)
            self.optimizer = create_loraplus_optimizer(
                opt_model, cls, lr=self.args.learning_rate, loraplus_lr_ratio=self.loraplus, loraplus_weight_decay=self.args.weight_decay, **kwargs
            )
        return super().create_optimizer(model)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The final adapter; a PiSSA one (lora.init=pissa) is rewritten by PEFT as a plain LoRA of
        rank 2r for the original base, since PiSSA also changed the base weights it trained on.
        Checkpoints (_internal_call) stay as trained: --resume rebuilds the same PiSSA start."""
        super().save_model(output_dir, _internal_call)
        if self.pissa_init and not _internal_call and self.args.should_save:
            self.accelerator.unwrap_model(self.model).save_pretrained(output_dir, path_initial_model_for_weight_conversion=self.pissa_init)

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        seal_and_rotate(self, trial, self.tokens_seen, self.keep)


def seal_and_rotate(trainer, trial, tokens_seen: int, keep: int | None) -> None:
    """After a Trainer saved checkpoint-<step>: seal it, then keep only the newest `keep` sealed
    ones (SFT's and RL's trainers both call this from their _save_checkpoint)."""
    trainer.accelerator.wait_for_everyone()  # every process has written its rng_state_<rank>.pth
    if not trainer.args.should_save:
        return
    run_dir = Path(trainer._get_output_dir(trial=trial))
    step = trainer.state.global_step
    checkpoints.seal(run_dir / f"checkpoint-{step}", {"step": step, "tokens_seen": tokens_seen})
    # Rotation by hand: the Trainer's own deletes older checkpoints (ordered by mtime) before
    # the new one is sealed, so a crash then could leave no complete checkpoint at all.
    sealed = [p for p in sorted(run_dir.glob("checkpoint-*"), key=checkpoints.step_of) if (p / checkpoints.SEAL).is_file()]
    if keep:
        for old in sealed[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
