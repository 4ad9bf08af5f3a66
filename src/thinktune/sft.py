"""Supervised fine-tuning (`thinktune train`): data -> model + LoRA -> Trainer -> a run folder.

Read it top to bottom. The run folder's life (partial folder, resume, checkpoints, metrics log,
loss curve, model card, publish by rename) is `run.Run`; what the user sees are the progress
events it passes on (events.py). The labels are made in `data.encode.encode_example`, called by
`data.prepare` below.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments, set_seed

from . import config as config_mod
from .data import Collator, PackingCollator, Prepared, prepare
from .data.pipeline import refuse_answerless, report_lines
from .errors import UserError
from .events import OnEvent
from .model import add_lora, align_special_tokens, load_model, load_tokenizer, resolve, trainable_parameters, weight_dtype
from .run import Run, run_arguments
from .speed import Loss, base_model, choose_loss
from .trainer import HeldoutEval, Progress, StopOnSignal, ThinktuneTrainer


@dataclass
class Result:
    """What `train` hands back: the summary (also summary.json), the run folder, and the trained
    model, its tokenizer and the prepared data, still in memory."""

    summary: dict
    run_dir: Path
    model: Any
    tokenizer: Any
    data: Prepared


def train(config, rows: list[dict] | None = None, resume: bool = False, on_event: OnEvent | None = None, callbacks=()) -> Result:
    """Fine-tune a model with LoRA. `config`: a Config or a YAML path; `rows`: data rows instead
    of data.path; `on_event`: called with every progress event; `callbacks`: more Trainer callbacks."""
    cfg = config_mod.load(config) if isinstance(config, (str, Path)) else config
    require_trackers(cfg)
    with Run(cfg, "sft", resume, on_event) as run:  # device and precision picked, run folder made (or reopened)
        device, precision = run.device, run.precision
        run.say(f"Device: {device} ({precision}); {run.state.num_processes} process(es).")
        if device == "cpu" and os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
            # accelerate 1.15 takes its FSDP path only for GPU process groups (MULTI_GPU and kin).
            run.say("FSDP was asked for, but accelerate only shards on GPUs; on CPU this run is plain data parallel (DDP).", "warning")

        # Data: rows rendered with the model's chat template; encode_example makes the labels.
        with run.state.main_process_first():  # a GGUF is converted once, by the main process
            source = resolve(cfg.model.name)
            tokenizer = load_tokenizer(source)
        data = prepare(cfg.data, tokenizer, cfg.train.seed, rows=rows)
        for level, line in report_lines(data.report):
            run.say(line, level)
        refuse_answerless(data.report)

        # Model: the base weights, then LoRA adapters on lora.target_modules.
        set_seed(cfg.train.seed)
        model = load_model(source, weight_dtype(precision, device, cfg.model.cpu_bf16_weights), device, cfg.model.attn_implementation, cfg.model.load_in_4bit)
        align_special_tokens(model, tokenizer)
        checkpointing = cfg.train.gradient_checkpointing
        if checkpointing is None:
            checkpointing = plan_says_tight(cfg, model, device, data.report.max_length, run)
        model = add_lora(model, cfg.lora, checkpointing)
        pissa_init = None
        if cfg.lora.init == "pissa":  # its start, which the final save subtracts (ThinktuneTrainer.save_model)
            pissa_init = str(run.checkpoints / "pissa-init")  # removed with the checkpoints
            model.save_pretrained(pissa_init, is_main_process=run.main)
        trainable, total = trainable_parameters(model)
        run.say(f"Trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.3f}%).")
        run.check_space(tokenizer, trainable, run.sft_steps(len(data.train)))

        # Loss: plain, head on labelled positions only, or Liger's kernel; chosen here, once.
        loss, note = choose_loss(model, cfg.train.head_on_labels, cfg.train.packing, device, run.state.distributed_type.value, precision)
        if note:
            run.say(note, "note")
        per_pass = rows_per_pass(cfg, device)
        pad = tokenizer.pad_token_id
        heldout = HeldoutEval(run, data.val, Collator(pad), cfg.train.eval_steps, per_pass)
        stop = StopOnSignal(run.state.num_processes == 1)
        trainer = ThinktuneTrainer(
            model=model,
            args=training_arguments(cfg, device, precision, run.checkpoints, loss),
            loss=loss,
            train_dataset=data.train,
            data_collator=PackingCollator(pad, base_model(model).config._attn_implementation) if cfg.train.packing else Collator(pad),
            processing_class=tokenizer,
            callbacks=[heldout, Progress(run), stop, *callbacks],
            run=run,
            keep=cfg.train.save_total_limit,
            lengths=[len(e["input_ids"]) for e in data.train],
            loraplus=cfg.lora.loraplus_lr_ratio,
            pissa_init=pissa_init,
        )
        report_to(trainer, cfg, run, heldout)
        run.say(effective_batch(cfg, run.state.num_processes, per_pass))
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        try:
            result = trainer.train(resume_from_checkpoint=run.resume_from)
        finally:
            stop.restore()  # an interrupted run does not reach on_train_end
        summary = _summary(cfg, run, trainer, result, data, time.perf_counter() - start, per_pass)
        summary.update(trainable_parameters=trainable, total_parameters=total, gradient_checkpointing=checkpointing, loss=loss.kind)
        run.publish(trainer, tokenizer, summary, summary_text(summary, run.out))
    return Result(summary, run.out, model, tokenizer, data)


def require_trackers(cfg) -> None:
    """Each tracker of train.report_to needs its package: say which, before any model is loaded
    (the Trainer would fail later, with less to go on)."""
    missing = [t for t in config_mod.trackers(cfg) if importlib.util.find_spec(t) is None]
    if missing:
        raise UserError(
            f"train.report_to={cfg.train.report_to}: {', '.join(missing)} is not installed; pip install {' '.join(missing)}, or set train.report_to=none."
        )


def report_to(trainer, cfg, run: Run, heldout: HeldoutEval) -> None:
    """Trackers get the held-out loss too (as eval/loss), and TensorBoard writes into the run
    folder: the Trainer's default is under its output_dir, our checkpoints, deleted at the end."""
    from transformers.integrations import TensorBoardCallback

    if not config_mod.trackers(cfg):
        return

    def report(logs: dict) -> None:
        # The callbacks' on_log directly: Trainer.log would also clear control.should_log mid-step,
        # and the step's training loss would then go unlogged.
        handler = trainer.callback_handler
        handler.call_event("on_log", trainer.args, trainer.state, trainer.control, logs=logs)

    heldout.report = report
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(run.work / "tensorboard")


def rows_per_pass(cfg, device: str) -> int:
    """Rows in one forward/backward. On CPU one row at a time is as fast as a padded pair
    (measured in benchmarks/train_speed.py) and keeps half the activations; a GPU needs the
    parallel work of a whole batch."""
    if cfg.train.rows_per_pass is not None:
        return cfg.train.rows_per_pass
    return 1 if device == "cpu" else cfg.train.batch_size


def effective_batch(cfg, processes: int, per_pass: int) -> str:
    t = cfg.train
    how = f" (run {per_pass} row(s) at a time: train.rows_per_pass={per_pass})" if per_pass < t.batch_size else ""
    return f"Effective batch: {processes} process(es) x {t.batch_size} rows x {t.grad_accum} accumulation = {processes * t.batch_size * t.grad_accum} rows per update{how}."


def training_arguments(cfg, device: str, precision: str, checkpoint_dir: Path, loss: Loss) -> TrainingArguments:
    t = cfg.train
    per_pass = rows_per_pass(cfg, device)
    return TrainingArguments(
        **run_arguments(cfg, device, precision, checkpoint_dir),
        # A batch of batch_size rows is run as batch_size/per_pass accumulated passes: the Trainer
        # normalises the loss by the labelled tokens of the whole update, so the update is the
        # same, and the length-grouped sampler (megabatch = per_pass x accumulation) the same order.
        per_device_train_batch_size=per_pass,
        gradient_accumulation_steps=t.grad_accum * (t.batch_size // per_pass),
        num_train_epochs=t.epochs,
        learning_rate=t.lr,
        logging_steps=t.logging_steps,
        eval_strategy="no",  # held-out loss is measured by HeldoutEval, per token
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        use_liger_kernel=loss.kind == "liger",
        ddp_find_unused_parameters=False,  # every LoRA weight is used; the search costs a pass
        remove_unused_columns=False,  # our collator picks the fields it needs
    )


def plan_says_tight(cfg, model, device: str, max_length: int, run: Run) -> bool:
    """train.gradient_checkpointing=null: on only when the memory plan (thinktune plan) of this
    run without it exceeds 90% of the device's memory (the GPU's, or the RAM available)."""
    from .plan import GiB, available_ram, dims_from_dict, estimate

    try:
        dims = dims_from_dict(model.config.to_dict(), cfg.model.name)
        e = estimate(
            dims,
            "qlora" if cfg.model.load_in_4bit else "lora",
            max_length,
            rows_per_pass(cfg, device),
            lora_r=cfg.lora.r,
            lora_targets=tuple(cfg.lora.target_modules),
            lora_dropout=cfg.lora.dropout,
            checkpointing=False,
            device="cuda" if device == "cuda" else "cpu",
            head_on_labels=cfg.train.head_on_labels,
        )
    except (UserError, KeyError) as err:  # an architecture the planner does not know
        run.say(f"no memory plan for this model ({err}); gradient checkpointing off (set train.gradient_checkpointing=true to force it).", "note")
        return False
    memory = torch.cuda.get_device_properties(0).total_memory if device == "cuda" else available_ram()
    tight = e.total > 0.9 * memory
    run.say(
        f"Memory plan at max length {max_length}: ~{e.total / GiB:.1f} GiB without gradient checkpointing, {memory / GiB:.1f} GiB available: gradient checkpointing {'on' if tight else 'off'}."
    )
    return tight


def _summary(cfg, run: Run, trainer, result, data: Prepared, wall: float, per_pass: int) -> dict:
    evals = [r["eval_loss"] for r in run.records if "eval_loss" in r]
    n = run.state.num_processes
    tokens = trainer.tokens_seen * n  # each process counts its own rows
    peak = torch.cuda.max_memory_allocated() if run.device == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0  # KiB on Linux
    return {
        "model": cfg.model.name,
        "device": run.device,
        "precision": run.precision,
        "processes": n,
        "effective_batch": n * cfg.train.batch_size * cfg.train.grad_accum,
        "rows_per_pass": per_pass,
        "resumed_from_step": run.start_step if run.resume_from else None,
        "rows_read": data.report.rows_read,
        "rows_used": data.report.train_rows + data.report.val_rows,
        "rows_dropped": data.report.dropped,
        "rows_truncated": data.report.truncated,
        "data": data.report.to_dict(with_rows=False),
        "optimizer_steps": result.global_step,
        "tokens_trained": tokens,
        "positions_computed": trainer.positions_seen * n,  # pads included (this session)
        "labelled_tokens_per_epoch": data.report.trained_tokens,
        "train_loss": result.training_loss,
        "eval_loss_start": evals[0] if evals else None,
        "eval_loss_end": evals[-1] if evals else None,
        "wall_seconds": round(wall, 2),
        "tokens_per_second": round(tokens / wall, 1),
        "peak_memory_gb": round(peak / 2**30, 3),
    }


def summary_text(s: dict, out: Path) -> str:
    ev = ""
    if s["eval_loss_start"] is not None:
        ev = f" Held-out loss {s['eval_loss_start']:.4f} -> {s['eval_loss_end']:.4f}."
    return (
        f"Done in {s['wall_seconds']:.0f} s: {s['optimizer_steps']} steps, {s['tokens_trained']:,} tokens "
        f"({s['tokens_per_second']:.0f} tokens/s), peak memory {s['peak_memory_gb']:.2f} GB on {s['device']}.{ev}\n"
        f"Run folder {out}: adapter_model.safetensors, adapter_config.json, tokenizer, config.yaml, "
        "metrics.jsonl, loss_curve.png, summary.json, README.md (what was trained and how to load it)."
    )
