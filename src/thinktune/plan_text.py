"""What `thinktune plan` prints: the table of estimates, the recommendation, and, last, the
`thinktune train` command that applies it (issue 15: a plan the user can act on)."""

from __future__ import annotations

import math
import shlex

from .errors import UserError
from .plan import METHODS, Fit, GiB, dims_from, estimate, fit

NAMES = {"lora": "LoRA", "qlora": "QLoRA", "full": "full fine-tune"}
BRIEF = [
    "bf16 on CUDA, fp32 on CPU; QLoRA = NF4 with double quantisation, the rest bf16",
    "16 bytes per trained parameter: fp32 weight, gradient and AdamW moments",
    "fused attention (no seq x seq scores); batches above 1 are padded and masked",
    "logits: thinktune's head on labelled positions, in chunks (else all fp32 logits)",
    "overhead: CUDA context 0.5 GiB + 10% fragmentation; on CPU the measured process baseline",
    "an estimate, not a measurement: the headroom is there for what it misses",
]
HEAD = f"{'method':<15}{'batch':>6}{'ckpt':>6}{'length':>8}{'weights':>9}{'adapter+opt':>13}{'activations':>13}{'logits':>8}{'overhead':>10}{'total':>8}  fits"


def format_plan(f: Fit, command: list[str] | None = None) -> str:
    """Each method with and without checkpointing at the chosen batch and length, the chosen
    setting at its longest length, a one-line recommendation, the assumptions in brief and,
    when a plan was found and `command` is given, that command as the last line."""
    ref = f.chosen or f.smallest
    rows = [
        estimate(f.dims, m, ref.seq_len, ref.batch, checkpointing=c, device=f.device, **f.options)
        for m in METHODS
        if not (m == "qlora" and f.device == "cpu")
        for c in (False, True)
    ]
    if f.longest is not None and f.longest.seq_len != ref.seq_len:
        rows.append(f.longest)
    plan, gb = f.longest or f.chosen, f"{f.usable / GiB:.2f} GiB"
    kept = f", {f.headroom / GiB:.2f} GiB of it kept free (--headroom): {gb} to use" if f.headroom else ""
    lines = [
        f"Memory plan: {f.dims.name} ({f.dims.params / 1e9:.2f}B parameters) on {f.device}, budget {f.budget / GiB:.2f} GiB{kept}",
        "Estimated peak memory of one training step, by part, in GiB:",
        "",
        HEAD,
        "-" * len(HEAD),
    ]
    for e in rows:
        parts = (e.weights, e.adapter_and_optimizer, e.activations, e.logits, e.overhead, e.total)
        nums = "".join(f"{p / GiB:>{w}.2f}" for p, w in zip(parts, (9, 13, 13, 8, 10, 8)))
        fits = ("yes  <- plan" if e == plan else "yes") if e.total <= f.usable else "no"
        lines.append(f"{NAMES[e.method]:<15}{e.batch:>6}{'on' if e.checkpointing else 'off':>6}{e.seq_len:>8}{nums}  {fits}")
    if plan is None:
        s = f.smallest
        lines.append(
            f"\n{f.dims.name} does not fit in {gb} even with {NAMES[s.method]}, batch {s.batch}, gradient checkpointing at max length {s.seq_len}: that needs {s.total / GiB:.2f} GiB."
        )
    else:
        ckpt = "gradient checkpointing" if plan.checkpointing else "no gradient checkpointing"
        lines.append(
            f"\n{f.dims.name} in {gb}: {NAMES[plan.method]}, batch {plan.batch}, {ckpt}, max length {plan.seq_len} (an estimated {plan.total / GiB:.2f} of {gb})"
        )
    lines += ["", "Assumptions (all of them: the docstring of thinktune.plan):"] + [f"- {b}" for b in BRIEF]
    if plan is not None and command:
        lines += ["", "To train with this plan:", shlex.join(command)]
    elif plan is not None and plan.method == "full":
        lines += ["", "thinktune train trains LoRA and QLoRA adapters: a full fine-tune is planned here for comparison only."]
    return "\n".join(lines)


def train_command(f: Fit, model: str, config: str | None, effective_batch: int, fixed_length: bool = False) -> list[str] | None:
    """The `thinktune train` command (argv) that applies the plan, keeping the config's effective
    batch (batch_size x grad_accum) with gradient accumulation; None when nothing fits or the
    plan is a full fine-tune, which `thinktune train` does not do (it trains LoRA adapters).
    `fixed_length`: the config sets data.max_length, which a cap would not override."""
    plan = f.longest or f.chosen
    if plan is None or plan.method == "full":
        return None
    argv = ["thinktune", "train"] + (["--config", config] if config else []) + ["--model", model]
    values = {
        "model.device": f.device,
        "model.load_in_4bit": "true" if plan.method == "qlora" else "false",
        "train.batch_size": plan.batch,
        "train.grad_accum": max(1, math.ceil(effective_batch / plan.batch)),
        "train.gradient_checkpointing": "true" if plan.checkpointing else "false",
    }
    # A cap, not a fixed length: data shorter than the plan still gets its own covering length.
    values["data.max_length" if fixed_length else "data.max_length_cap"] = plan.seq_len
    return argv + [x for key, value in values.items() for x in ("--set", f"{key}={value}")]


def plan_report(
    cfg,
    memory: float,
    device: str = "cuda",
    model: str | None = None,
    method: str | None = None,
    max_length: int | None = None,
    batch_size: int | None = None,
    headroom: float = 0.5,
    config_path: str | None = None,
) -> str:
    """`thinktune plan`'s text for a config (its model, LoRA rank, targets, dropout and length)
    and a memory budget in GiB: what the CLI prints and the web page shows."""
    # argparse's float() takes nan, inf and 1e308, which the byte count below cannot hold; nan
    # fails every comparison, so it is refused too. 1 PiB is far above any machine's memory.
    if not 0 < memory <= 2**20:
        raise UserError(f"--memory must be a finite positive number of GiB, at most 1048576 (1 PiB); got {memory:g}.")
    if (max_length is not None and max_length < 64) or (batch_size is not None and batch_size < 1):
        raise UserError("--max-length must be at least 64 and --batch-size at least 1.")
    if not 0 <= headroom < memory:
        raise UserError(f"--headroom must be at least 0 and less than --memory ({memory:g} GiB); got {headroom:g}.")
    model = model or cfg.model.name
    limit = max_length or cfg.data.max_length  # a hard limit: no row of the plan above it
    result = fit(
        dims_from(model),
        int(memory * GiB),
        device,
        seq_lens=(limit, *(n for n in (2048, 1024, 512) if n < limit)) if limit else (4096, 2048, 1024, 512),
        max_len_cap=limit or 32768,
        headroom_bytes=int(headroom * GiB),
        methods=(method,) if method else ("lora", "qlora"),
        batches=(batch_size,) if batch_size else (4, 2, 1),
        lora_r=cfg.lora.r,
        lora_targets=tuple(cfg.lora.target_modules),
        lora_dropout=cfg.lora.dropout,
        head_on_labels=cfg.train.head_on_labels,
    )
    command = train_command(result, model, config_path, cfg.train.batch_size * cfg.train.grad_accum, fixed_length=cfg.data.max_length is not None)
    return format_plan(result, command)
