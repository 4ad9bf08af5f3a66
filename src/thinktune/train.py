"""`thinktune train`: data -> model + LoRA -> transformers Trainer -> a complete run folder.

The run folder is built under a temporary name beside the target and renamed at the end, so a
failed or interrupted run never leaves a half-written adapter or summary behind.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from . import config as config_mod
from .atomic import replace_dir, temp_dir, write_json, write_text
from .data import Collator, prepare
from .errors import UserError
from .evaluate.loss import heldout_loss
from .model import add_lora, load_model, load_tokenizer, pick_device, pick_precision, resolve, trainable_parameters, weight_dtype
from .plots import loss_curve

RUN_MARKERS = ("adapter_config.json", "summary.json", "metrics.jsonl")


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Refuse to write over an existing run, and fail early on an unwritable folder."""
    if out.exists() and not out.is_dir():
        raise UserError(f"Output folder {out} exists and is a file; choose another --out.")
    if out.is_dir() and any(out.iterdir()):
        if not any((out / m).exists() for m in RUN_MARKERS):
            # Never delete a folder we did not write (e.g. --out runs, holding other runs).
            raise UserError(f"Output folder {out} is not empty and holds no thinktune run; choose a new or empty folder for --out.")
        if not overwrite:
            raise UserError(f"Output folder {out} already holds a run; pass --overwrite (train.overwrite=true) to replace it, or choose another --out.")
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    if not os.access(parent, os.W_OK):
        raise UserError(f"Cannot write into {parent}; choose a writable --out.")


class MetricsLog(TrainerCallback):
    """Writes one JSON line per log event (train loss, lr, grad norm, tokens/s, eval loss)."""

    def __init__(self, path: Path):
        self.path = path
        self.records: list[dict] = []

    def write(self, record: dict) -> None:
        self.records.append(record)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def on_log(self, args, state, control, logs=None, **kw):
        logs = dict(logs or {})
        rec = {"step": state.global_step, "epoch": round(state.epoch or 0.0, 4)}
        keys = {"loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm", "tokens_per_second": "tokens_per_second"}
        rec.update({new: logs[old] for old, new in keys.items() if old in logs})
        if "loss" in rec:
            self.write(rec)


class HeldoutEval(TrainerCallback):
    """Held-out loss before training, every eval_steps, and at the end (per-token mean)."""

    def __init__(self, val: list[dict], collator, every: int, batch_size: int, log: MetricsLog):
        self.val, self.collator, self.every, self.batch_size, self.log = val, collator, every, batch_size, log
        self.last_step = -1

    def measure(self, model, state) -> None:
        if not self.val or state.global_step == self.last_step:
            return
        self.last_step = state.global_step
        result = heldout_loss(model, self.val, self.collator, self.batch_size)
        self.log.write({"step": state.global_step, "epoch": round(state.epoch or 0.0, 4), "eval_loss": result["loss"]})
        print(f"  step {state.global_step}: held-out loss {result['loss']:.4f}", flush=True)

    def on_train_begin(self, args, state, control, model=None, **kw):
        self.measure(model, state)

    def on_step_end(self, args, state, control, model=None, **kw):
        if self.every and state.global_step % self.every == 0:
            self.measure(model, state)

    def on_train_end(self, args, state, control, model=None, **kw):
        self.measure(model, state)


class ThinktuneTrainer(Trainer):
    """Trainer that also reports useful tokens/s (the rows' own tokens, pads excluded)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.tokens_seen = 0
        self._mark = None  # (tokens, time) at the last log; set at the first step, not at start-up

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self._mark is None:
            self._mark = (0, time.perf_counter())
        self.tokens_seen += int(inputs["attention_mask"].sum())
        return super().training_step(model, inputs, num_items_in_batch)

    def log(self, logs, start_time=None):
        if "loss" in logs:
            tokens, t = self._mark
            now = time.perf_counter()
            logs["tokens_per_second"] = round((self.tokens_seen - tokens) / max(now - t, 1e-9), 1)
            self._mark = (self.tokens_seen, now)
        super().log(logs, start_time)


def training_arguments(cfg, device: str, precision: str, work: Path) -> TrainingArguments:
    t = cfg.train
    return TrainingArguments(
        output_dir=str(work / "checkpoints"),
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        num_train_epochs=t.epochs,
        learning_rate=t.lr,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # transformers 5 takes a ratio in [0, 1) here
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        eval_strategy="no",  # held-out loss is measured by HeldoutEval, per token
        save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 500,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        seed=t.seed,
        data_seed=t.seed,
        remove_unused_columns=False,  # our collator picks the fields it needs
        report_to=[],
        dataloader_num_workers=0,
    )


def train(cfg, rows: list[dict] | None = None) -> dict:
    """Run one fine-tune from a Config and return its summary (also written to summary.json)."""
    return run_training(cfg, rows)[0]


def run_training(cfg, rows: list[dict] | None = None):
    """Like train(), but also hands back (summary, trained PeftModel, tokenizer, prepared data)."""
    out = Path(cfg.train.output_dir)
    check_output_dir(out, cfg.train.overwrite)
    device = pick_device(cfg.model.device)
    precision = pick_precision(cfg.model.precision, device)
    print(f"Device: {device} ({precision}).", flush=True)
    source = resolve(cfg.model.name)
    tokenizer = load_tokenizer(source)
    data = prepare(cfg.data, tokenizer, cfg.train.seed, rows=rows)
    print_data_report(data.report)

    set_seed(cfg.train.seed)
    model = load_model(source, weight_dtype(precision, device), device, cfg.model.attn_implementation)
    model = add_lora(model, cfg.lora, cfg.train.gradient_checkpointing)
    trainable, total = trainable_parameters(model)
    print(f"Trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.3f}%).", flush=True)

    with temp_dir(out.resolve().parent, f".{out.name}.tmp-") as work:
        summary = _fit(cfg, model, tokenizer, data, device, precision, work)
        summary.update(trainable_parameters=trainable, total_parameters=total)
        _write_outputs(cfg, model, tokenizer, summary, work)
        replace_dir(work, out)
    print_summary(summary, out)
    return summary, model, tokenizer, data


def _fit(cfg, model, tokenizer, data, device, precision, work: Path) -> dict:
    collator = Collator(tokenizer.pad_token_id)
    log = MetricsLog(work / "metrics.jsonl")
    heldout = HeldoutEval(data.val, collator, cfg.train.eval_steps, cfg.train.batch_size, log)
    trainer = ThinktuneTrainer(
        model=model,
        args=training_arguments(cfg, device, precision, work),
        train_dataset=data.train,
        data_collator=collator,
        processing_class=tokenizer,
        callbacks=[log, heldout],
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = trainer.train()
    wall = time.perf_counter() - start
    evals = [r["eval_loss"] for r in log.records if "eval_loss" in r]
    return {
        "model": cfg.model.name,
        "device": device,
        "precision": precision,
        "rows_read": data.report.rows_read,
        "rows_used": data.report.train_rows + data.report.val_rows,
        "rows_dropped": data.report.dropped,
        "rows_truncated": data.report.truncated,
        "data": data.report.to_dict(with_rows=False),
        "optimizer_steps": result.global_step,
        "tokens_trained": trainer.tokens_seen,
        "labelled_tokens_per_epoch": data.report.trained_tokens,
        "train_loss": result.training_loss,
        "eval_loss_start": evals[0] if evals else None,
        "eval_loss_end": evals[-1] if evals else None,
        "wall_seconds": round(wall, 2),
        "tokens_per_second": round(trainer.tokens_seen / wall, 1),
        "peak_memory_gb": round(_peak_memory(device) / 2**30, 3),
    }


def _peak_memory(device: str) -> float:
    if device == "cuda":
        return float(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0  # KiB on Linux


def _write_outputs(cfg, model, tokenizer, summary: dict, work: Path) -> None:
    model.save_pretrained(work)  # PEFT adapter: adapter_model.safetensors + adapter_config.json
    tokenizer.save_pretrained(work)
    write_text(work / "config.yaml", config_mod.dump(cfg))
    records = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    loss_curve(records, work / "loss_curve.png", title=f"{cfg.model.name} + LoRA r={cfg.lora.r}")
    write_json(work / "summary.json", summary)
    if not cfg.train.save_steps:
        shutil.rmtree(work / "checkpoints", ignore_errors=True)


def print_data_report(r) -> None:
    print(
        f"Data: {r.rows_read} rows read from {r.source}, {r.rows_selected} selected; "
        f"max_length {r.max_length} ({r.max_length_reason}); {r.over_length} over it "
        f"({r.dropped} dropped, {r.truncated} truncated, {r.answer_lost} would lose their whole answer); "
        f"{r.train_rows} train / {r.val_rows} held-out rows; {r.trained_tokens:,} labelled tokens per epoch.",
        flush=True,
    )
    for w in r.warnings:
        print(f"Warning: {w}", flush=True)


def print_summary(s: dict, out: Path) -> None:
    ev = ""
    if s["eval_loss_start"] is not None:
        ev = f" Held-out loss {s['eval_loss_start']:.4f} -> {s['eval_loss_end']:.4f}."
    print(
        f"\nDone in {s['wall_seconds']:.0f} s: {s['optimizer_steps']} steps, {s['tokens_trained']:,} tokens "
        f"({s['tokens_per_second']:.0f} tokens/s), peak memory {s['peak_memory_gb']:.2f} GB on {s['device']}.{ev}\n"
        f"Run folder {out}: adapter_model.safetensors, adapter_config.json, tokenizer, config.yaml, "
        "metrics.jsonl, loss_curve.png, summary.json.",
        flush=True,
    )
