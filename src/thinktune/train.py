"""`thinktune train`: data -> model + LoRA -> transformers Trainer -> a complete run folder.

The run is built in `.<name>.partial/` beside the target and renamed to `<name>` only when it is
complete, so a failed or killed run never leaves a half-written adapter or summary where a
finished run would be. Checkpoints (train.save_steps) live in `.<name>.partial/checkpoints/` and
are sealed when complete; `--resume` continues from the newest sealed one. Under `torchrun` or
`accelerate launch` every process trains, and only the main one writes.
"""

from __future__ import annotations

import importlib.util
import math
import os
import resource
import shutil
import time
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from transformers import TrainingArguments, set_seed

from . import checkpoints
from . import config as config_mod
from .atomic import replace_dir, write_json, write_jsonl, write_text
from .card import model_card
from .data import Collator, PackingCollator, prepare
from .data.pipeline import refuse_answerless
from .errors import UserError
from .model import add_lora, align_special_tokens, load_model, quantization_config, load_tokenizer, pick_device, pick_precision, resolve, trainable_parameters, weight_dtype
from .plots import loss_curve
from .speed import HeadOnLabels, causal_mask_suffices
from .trainer import ConsoleProgress, HeldoutEval, MetricsLog, ThinktuneTrainer, read_metrics

RUN_MARKERS = ("adapter_config.json", "summary.json", "metrics.jsonl")
# Settings that may differ between a run and its --resume without changing what is trained.
RESUME_FREE = {"train.overwrite", "train.logging_steps", "train.eval_steps", "train.save_steps", "train.save_total_limit", "train.keep_checkpoints"}


def partial_dir(out: Path) -> Path:
    return out.resolve().parent / f".{out.name}.partial"


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
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"Cannot create the folder {parent} for --out {out}: {e.strerror}. Choose a writable --out.") from e
    if not os.access(parent, os.W_OK):
        raise UserError(f"Cannot write into {parent}; choose a writable --out.")


def _config_changes(old, new) -> list[tuple[str, object, object]]:
    a, b = old.to_dict(), new.to_dict()
    return [(f"{s}.{k}", a[s][k], b[s][k]) for s in b for k in b[s] if a.get(s, {}).get(k) != b[s][k]]


def prepare_work(cfg, out: Path, work: Path, resume: bool) -> tuple[str | None, list[dict]]:
    """Main process only: make (or check) the partial folder. Returns the checkpoint to resume
    from (or None) and the metrics records up to it."""
    check_output_dir(out, cfg.train.overwrite)
    ckpt_dir = work / "checkpoints"
    if not resume:
        last = checkpoints.latest_complete(ckpt_dir)[0] if ckpt_dir.is_dir() else None
        if last is not None and not cfg.train.overwrite:
            raise UserError(
                f"An interrupted run of {out} is in {work} with a complete checkpoint ({last.name}). Run the same command "
                "with --resume to continue it, or with --overwrite to start again from scratch."
            )
        shutil.rmtree(work, ignore_errors=True)  # our own leftover with nothing worth keeping
        try:
            (work / "checkpoints").mkdir(parents=True)
        except OSError as e:
            raise UserError(f"Cannot create the run folder {work}: {e.strerror}. Choose a writable --out.") from e
        write_text(work / "config.yaml", config_mod.dump(cfg))
        return None, []
    if not (work / "config.yaml").is_file():
        done = " It already finished: its run folder is complete." if (out / "summary.json").is_file() else ""
        raise UserError(f"Nothing to resume for {out}: there is no interrupted run in {work}.{done} Run without --resume to start one.")
    changes = _config_changes(config_mod.load(work / "config.yaml"), cfg)
    fatal = [c for c in changes if not c[0].startswith("train.")]
    if fatal:
        listed = "; ".join(f"{k} was {a!r}, now {b!r}" for k, a, b in fatal)
        raise UserError(f"Cannot resume {work} with different model, data or LoRA settings ({listed}): the checkpoint would not fit them.")
    for key, a, b in changes:
        if key not in RESUME_FREE:
            print(f"Warning: resuming with {key} changed from {a!r} to {b!r}; the result will differ from an uninterrupted run.", flush=True)
    last, skipped = checkpoints.latest_complete(ckpt_dir) if ckpt_dir.is_dir() else (None, [])
    for folder, why in skipped:
        print(f"Warning: skipping {folder.name}: {why}. Removing it.", flush=True)
        shutil.rmtree(folder, ignore_errors=True)
    if last is None:
        raise UserError(f"Nothing to resume in {work}: it holds no complete checkpoint (train.save_steps={cfg.train.save_steps}). Run again with --overwrite to start from scratch.")
    records = read_metrics(work / "metrics.jsonl", checkpoints.step_of(last))
    write_jsonl(work / "metrics.jsonl", records)
    write_text(work / "config.yaml", config_mod.dump(cfg))
    print(f"Resuming from {last} (step {checkpoints.step_of(last)}).", flush=True)
    return str(last), records


def _on_main(state: PartialState, fn):
    """Run fn on the main process only and hand its result (or its error) to every process, so
    that all of them stop together instead of the others waiting at a barrier forever."""
    box = [None, None]
    if state.is_main_process:
        try:
            box[0] = fn()
        except UserError as e:
            box[1] = str(e)
    box = broadcast_object_list(box) if state.num_processes > 1 else box
    if box[1] is not None:
        raise UserError(box[1])
    return box[0]


def train(cfg, rows: list[dict] | None = None, resume: bool = False) -> dict:
    """Run one fine-tune from a Config and return its summary (also written to summary.json)."""
    return run_training(cfg, rows, resume)[0]


def run_training(cfg, rows: list[dict] | None = None, resume: bool = False):
    """Like train(), but also hands back (summary, trained PeftModel, tokenizer, prepared data)."""
    out = Path(cfg.train.output_dir)
    device = pick_device(cfg.model.device)
    precision = pick_precision(cfg.model.precision, device)
    quantization_config(cfg.model.load_in_4bit, device, torch.bfloat16)  # QLoRA off CUDA: fail before any write
    state = PartialState(cpu=device == "cpu")  # one of N processes under torchrun / accelerate launch
    work = partial_dir(out)
    resume_from, records = _on_main(state, lambda: prepare_work(cfg, out, work, resume))
    try:
        summary, model, tokenizer, data = _run(cfg, rows, device, precision, state, work, out, resume_from, records)
    except BaseException as e:
        # Keep the partial run only when it holds a checkpoint worth resuming from.
        last = checkpoints.latest_complete(work / "checkpoints")[0] if work.is_dir() else None
        if state.is_main_process and work.is_dir() and last is None:
            shutil.rmtree(work, ignore_errors=True)
        if isinstance(e, Exception) and not isinstance(e, UserError):
            # Writers fail in their own words on a full disk (tokenizers: "os error 28", torch.save:
            # "file write failed"); the free space says what happened.
            checkpoints.raise_if_disk_full(work.parent, last, e)
        raise
    if state.is_main_process:
        print_summary(summary, out)
    state.wait_for_everyone()
    return summary, model, tokenizer, data


def _run(cfg, rows, device, precision, state, work: Path, out: Path, resume_from, records):
    say = print if state.is_main_process else (lambda *a, **k: None)
    say(f"Device: {device} ({precision}); {state.num_processes} process(es).", flush=True)
    warnings = []
    if device == "cpu" and os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
        # accelerate 1.15 takes its FSDP path only for GPU process groups (MULTI_GPU and kin).
        warnings.append("FSDP was asked for, but accelerate only shards on GPUs; on CPU this run is plain data parallel (DDP).")
        say(f"Warning: {warnings[-1]}", flush=True)
    with state.main_process_first():  # a GGUF is converted once, by the main process
        source = resolve(cfg.model.name)
        tokenizer = load_tokenizer(source)
    data = prepare(cfg.data, tokenizer, cfg.train.seed, rows=rows)
    if state.is_main_process:
        print_data_report(data.report)
    refuse_answerless(data.report)

    set_seed(cfg.train.seed)
    model = load_model(source, weight_dtype(precision, device), device, cfg.model.attn_implementation, cfg.model.load_in_4bit)
    align_special_tokens(model, tokenizer)
    checkpointing = cfg.train.gradient_checkpointing
    if checkpointing is None:
        checkpointing = _plan_says_tight(cfg, model, device, data.report.max_length, say)
    model = add_lora(model, cfg.lora, checkpointing)
    trainable, total = trainable_parameters(model)
    say(f"Trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.3f}%).", flush=True)
    _on_main(state, lambda: _check_space(cfg, tokenizer, work, trainable, len(data.train), state.num_processes))
    summary, trainer = _fit(cfg, model, tokenizer, data, device, precision, work, state, resume_from, records)
    summary.update(trainable_parameters=trainable, total_parameters=total, gradient_checkpointing=checkpointing,
                   warnings=data.report.warnings + warnings)
    trainer.save_model(str(work))  # PEFT adapter folder; FSDP/DeepSpeed gather it; main writes
    if state.is_main_process:
        (work / "training_args.bin").unlink(missing_ok=True)  # a pickle of TrainingArguments: config.yaml says it
        _write_outputs(cfg, tokenizer, summary, work)
        replace_dir(work, out)
    return summary, model, tokenizer, data


def _plan_says_tight(cfg, model, device: str, max_length: int, say) -> bool:
    """train.gradient_checkpointing=null: on only when the memory plan (thinktune plan) of this
    run without it exceeds 90% of the device's memory (the GPU's, or the RAM available)."""
    from .plan import GiB, dims_from_dict, estimate

    where = "cuda" if device == "cuda" else "cpu"
    try:
        dims = dims_from_dict(model.config.to_dict(), cfg.model.name)
        e = estimate(dims, "qlora" if cfg.model.load_in_4bit else "lora", max_length, rows_per_pass(cfg, device), lora_r=cfg.lora.r,
                     lora_targets=tuple(cfg.lora.target_modules), lora_dropout=cfg.lora.dropout, checkpointing=False,
                     device=where, head_on_labels=cfg.train.head_on_labels)
    except (UserError, KeyError) as err:  # an architecture the planner does not know
        say(f"Note: no memory plan for this model ({err}); gradient checkpointing off (set train.gradient_checkpointing=true to force it).", flush=True)
        return False
    memory = torch.cuda.get_device_properties(0).total_memory if device == "cuda" else _available_ram()
    tight = e.total > 0.9 * memory
    say(f"Memory plan at max length {max_length}: ~{e.total / GiB:.1f} GiB without gradient checkpointing, "
        f"{memory / GiB:.1f} GiB available: gradient checkpointing {'on' if tight else 'off'}.", flush=True)
    return tight


def _available_ram() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _check_space(cfg, tokenizer, work: Path, trainable: int, train_rows: int, processes: int) -> None:
    t = cfg.train
    # Each checkpoint holds a copy of the tokenizer: its JSON, plus ~1 MiB for the config and template.
    tok_bytes = len(tokenizer.backend_tokenizer.to_str(pretty=True)) + (1 << 20) if tokenizer.is_fast else 8 << 20
    steps = math.ceil(math.ceil(train_rows / (t.batch_size * processes)) / t.grad_accum * t.epochs)
    saves = steps // t.save_steps + 1 if t.save_steps else 0  # the Trainer also saves the last step
    kept = min(saves, (t.save_total_limit or saves) + 1)  # one more exists while the next is sealed
    one = checkpoints.checkpoint_bytes(trainable, tok_bytes)
    need = kept * one + 4 * trainable + (8 << 20)  # + the final adapter, metrics and plot
    checkpoints.check_free_space(work, need, f"{kept} checkpoint(s) of ~{one / 2**20:,.1f} MiB and the final adapter")


def rows_per_pass(cfg, device: str) -> int:
    """Rows in one forward/backward. On CPU one row at a time is as fast as a padded pair
    (measured in benchmarks/train_speed.py) and keeps half the activations; a GPU needs the
    parallel work of a whole batch."""
    if cfg.train.rows_per_pass is not None:
        return cfg.train.rows_per_pass
    return 1 if device == "cpu" else cfg.train.batch_size


def training_arguments(cfg, device: str, precision: str, work: Path) -> TrainingArguments:
    t = cfg.train
    per_pass = rows_per_pass(cfg, device)
    return TrainingArguments(
        output_dir=str(work / "checkpoints"),
        # A batch of batch_size rows is run as batch_size/per_pass accumulated passes: the Trainer
        # normalises the loss by the labelled tokens of the whole update, so the update is the
        # same, and the length-grouped sampler (megabatch = per_pass x accumulation) the same order.
        per_device_train_batch_size=per_pass,
        gradient_accumulation_steps=t.grad_accum * (t.batch_size // per_pass),
        num_train_epochs=t.epochs,
        learning_rate=t.lr,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,  # transformers 5 takes a ratio in [0, 1) here
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a NaN must stop the run (NonFiniteGuard), not be averaged away
        eval_strategy="no",  # held-out loss is measured by HeldoutEval, per token
        save_strategy="steps" if t.save_steps else "no",
        save_steps=t.save_steps or 500,
        save_total_limit=None,  # ThinktuneTrainer rotates sealed checkpoints itself
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=device == "cpu",
        seed=t.seed,
        data_seed=t.seed,
        ddp_find_unused_parameters=False,  # every LoRA weight is used; the search costs a pass
        remove_unused_columns=False,  # our collator picks the fields it needs
        report_to=[],
        dataloader_num_workers=0,
    )


def _fit(cfg, model, tokenizer, data, device, precision, work: Path, state, resume_from, records) -> tuple[dict, ThinktuneTrainer]:
    t = cfg.train
    say = print if state.is_main_process else (lambda *a, **k: None)
    collator = Collator(tokenizer.pad_token_id)
    attention = model.get_base_model().config._attn_implementation
    train_collator = PackingCollator(tokenizer.pad_token_id, attention) if t.packing else collator
    head, liger = _head_choice(cfg, model, device, state, say)
    log = MetricsLog(work / "metrics.jsonl", enabled=state.is_main_process, records=records)
    start_step = checkpoints.step_of(Path(resume_from)) if resume_from else -1
    per_pass = rows_per_pass(cfg, device)
    plot = _curve(cfg, work) if state.is_main_process else None
    heldout = HeldoutEval(data.val, collator, t.eval_steps, per_pass, log, plot=plot, last_step=start_step)
    args = training_arguments(cfg, device, precision, work)
    args.use_liger_kernel = liger
    trainer = ThinktuneTrainer(
        model=model,
        args=args,
        head=head,
        causal_only=not t.packing and causal_mask_suffices(model),
        train_dataset=data.train,
        data_collator=train_collator,
        processing_class=tokenizer,
        callbacks=[log, heldout, ConsoleProgress(log, enabled=state.is_main_process)],
        keep=t.save_total_limit,
        tokens_seen=checkpoints.read_seal(Path(resume_from))["tokens_seen"] if resume_from else 0,
        lengths=[len(e["input_ids"]) for e in data.train],
    )
    effective = state.num_processes * t.batch_size * t.grad_accum
    how = f" (run {per_pass} row(s) at a time: train.rows_per_pass={per_pass})" if per_pass < t.batch_size else ""
    say(f"Effective batch: {state.num_processes} process(es) x {t.batch_size} rows x {t.grad_accum} accumulation = {effective} rows per update{how}.", flush=True)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume_from)
    wall = time.perf_counter() - start
    evals = [r["eval_loss"] for r in log.records if "eval_loss" in r]
    tokens = trainer.tokens_seen * state.num_processes  # each process counts its own rows
    return {
        "model": cfg.model.name,
        "device": device,
        "precision": precision,
        "processes": state.num_processes,
        "effective_batch": effective,
        "rows_per_pass": per_pass,
        "resumed_from_step": start_step if resume_from else None,
        "rows_read": data.report.rows_read,
        "rows_used": data.report.train_rows + data.report.val_rows,
        "rows_dropped": data.report.dropped,
        "rows_truncated": data.report.truncated,
        "data": data.report.to_dict(with_rows=False),
        "optimizer_steps": result.global_step,
        "tokens_trained": tokens,
        "positions_computed": trainer.positions_seen * state.num_processes,  # pads included (this session)
        "labelled_tokens_per_epoch": data.report.trained_tokens,
        "train_loss": result.training_loss,
        "eval_loss_start": evals[0] if evals else None,
        "eval_loss_end": evals[-1] if evals else None,
        "wall_seconds": round(wall, 2),
        "tokens_per_second": round(tokens / wall, 1),
        "peak_memory_gb": round(_peak_memory(device) / 2**30, 3),
    }, trainer


def _head_choice(cfg, model, device: str, state, say):
    """(HeadOnLabels or None, use_liger_kernel): where the head and loss run only on labels."""
    if not cfg.train.head_on_labels:
        return None, False
    if device == "cuda" and importlib.util.find_spec("liger_kernel") is not None:
        return None, True  # Liger's fused linear cross-entropy: the same idea as a Triton kernel
    why = HeadOnLabels.why_not(model)
    if why is None and state.distributed_type.value in ("FSDP", "DEEPSPEED"):
        why = "FSDP/DeepSpeed shard the head's weight"
    if why:
        say(f"Note: train.head_on_labels is off for this run: {why}.", flush=True)
        return None, False
    return HeadOnLabels(model), False


def _peak_memory(device: str) -> float:
    if device == "cuda":
        return float(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0  # KiB on Linux


def _curve(cfg, work: Path):
    """Draws the run's loss_curve.png from metrics records: at each held-out measurement and at the end."""
    return lambda records: loss_curve(records, work / "loss_curve.png", title=f"{cfg.model.name} + LoRA r={cfg.lora.r}")


def _write_outputs(cfg, tokenizer, summary: dict, work: Path) -> None:
    tokenizer.save_pretrained(work)
    write_text(work / "config.yaml", config_mod.dump(cfg))
    records = read_metrics(work / "metrics.jsonl", 1 << 62)
    write_jsonl(work / "metrics.jsonl", records)  # rewritten whole: no line cut short survives
    _curve(cfg, work)(records)
    write_json(work / "summary.json", summary)
    write_text(work / "README.md", model_card(cfg, summary, cfg.train.output_dir))  # replaces PEFT's blank card
    ckpt = work / "checkpoints"
    if ckpt.is_dir() and (not cfg.train.keep_checkpoints or not any(ckpt.iterdir())):
        shutil.rmtree(ckpt)  # they exist to resume an unfinished run (issue 11)


def print_data_report(r) -> None:
    print(
        f"Data: {r.rows_read} rows read from {r.source}, {r.rows_selected} selected; "
        f"max_length {r.max_length} ({r.max_length_reason}); {r.over_length} over it "
        f"({r.dropped} dropped, {r.truncated} truncated, {r.answer_lost} would lose their whole answer); "
        f"{r.train_rows} train / {r.val_rows} held-out rows; {r.trained_tokens:,} labelled tokens per epoch.",
        flush=True,
    )
    if r.duplicate_groups:
        print(f"Duplicates: {r.duplicate_groups} question(s) asked by more than one row ({r.duplicate_rows} rows); "
              "each such group is kept whole on one side of the train / held-out split.", flush=True)
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
        "metrics.jsonl, loss_curve.png, summary.json, README.md (what was trained and how to load it).",
        flush=True,
    )
