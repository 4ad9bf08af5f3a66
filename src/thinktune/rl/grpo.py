"""Stage two (`thinktune rl`): GRPO on answers that can be checked, with TRL's GRPOTrainer.

Read it top to bottom, like sft.py: items -> prompts -> model + the SFT adapter (or a fresh LoRA)
-> GRPOTrainer with our rewards -> the same kind of run folder as SFT's (run.Run: partial folder,
sealed checkpoints, --resume, NaN guard, publish by rename), plus completions.jsonl and
reward_curve.png. The rewards are pure functions (rl/rewards.py), one TRL reward per component.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, set_seed

from .. import config as config_mod
from ..atomic import write_jsonl
from ..data.encode import bos_prefix, tokenize
from ..data.render import opens_think
from ..errors import UserError
from ..events import OnEvent, Step
from ..model import add_lora, align_special_tokens, load_model, load_tokenizer, resolve, trainable_parameters, weight_dtype
from ..run import Run, read_metrics, run_arguments, run_config
from ..trainer import NonFiniteGuard, StopOnSignal, divergence_error, seal_and_rotate
from .items import Items, drop_contaminated, load_items
from .report import rl_card, summary_text
from .scoring import Scorer, append_rows, weights


@dataclass
class Result:
    summary: dict
    run_dir: Path
    model: Any
    tokenizer: Any


def train_rl(config, resume: bool = False, on_event: OnEvent | None = None, held: dict | None = None, callbacks=()) -> Result:
    """GRPO with LoRA. `config`: a Config or a YAML path; `held`: benchmark name -> items to keep
    out of training besides rl.exclude (the demo's held-out split)."""
    cfg = config_mod.load(config) if isinstance(config, (str, Path)) else config
    rl = cfg.rl
    check_adapter_base(cfg)
    with Run(cfg, "rl", resume, on_event) as run:
        device, precision = run.device, run.precision
        vllm = use_vllm(rl.generator, device)
        run.say(f"Device: {device} ({precision}); generation with {'vLLM (colocate)' if vllm else 'transformers generate'}.")

        # Items with checkable answers, the test questions left out, prompts as `thinktune eval` poses them.
        source = resolve(cfg.model.name)
        tokenizer = load_tokenizer(source)
        items = drop_contaminated(load_items(rl.data, rl.limit, cfg.train.seed), list(rl.exclude), held)
        dataset, too_long = prompt_rows(items, tokenizer, rl)
        run.say(items_line(items, too_long, len(dataset)))
        if not dataset:
            raise UserError(f"rl.data={rl.data}: no item is left to train on ({items_line(items, too_long, 0)}).")

        # Model: the base, then the SFT adapter (its LoRA goes on training) or a fresh LoRA.
        set_seed(cfg.train.seed)
        model = load_model(source, weight_dtype(precision, device, cfg.model.cpu_bf16_weights), device, cfg.model.attn_implementation, cfg.model.load_in_4bit)
        align_special_tokens(model, tokenizer)
        # null: on for a GPU (TRL's default; 8 completions of 2k tokens are what fills it), off on a CPU, whose RAM holds them
        checkpointing = cfg.train.gradient_checkpointing if cfg.train.gradient_checkpointing is not None else device == "cuda"
        model = start_adapter(model, cfg, run, checkpointing)
        asked = {None: "null, so on for a GPU and off on a CPU", True: "true", False: "false"}[cfg.train.gradient_checkpointing]
        run.say(f"Gradient checkpointing {'on' if checkpointing else 'off'} (train.gradient_checkpointing={asked}).")
        trainable, total = trainable_parameters(model)
        run.say(f"Trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.3f}%).")
        run.check_space(tokenizer, trainable, rl.steps)

        # Rewards: one TRL reward function per component; completions.jsonl every rl.completions_every steps.
        log_path = run.work / "completions.jsonl"
        if run.main and run.resume_from:  # the rows of steps after the checkpoint are made again
            write_jsonl(log_path, read_metrics(log_path, run.start_step))
        stops = {t for t in (tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None} | set(eos_ids(model))
        scorer = Scorer(tokenizer, rl, stops, append_rows(log_path) if run.main else None)
        stop = StopOnSignal(run.state.num_processes == 1)
        trainer = RlTrainer(
            model=model,
            reward_funcs=scorer.funcs(),
            args=grpo_arguments(cfg, device, precision, run.checkpoints, vllm, checkpointing),
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[RlProgress(run), stop, *callbacks],
            run=run,
            keep=cfg.train.save_total_limit,
        )
        per_step = rl.prompts_per_step * rl.num_generations
        run.say(
            f"Each update: {rl.prompts_per_step} prompt(s) x {rl.num_generations} completions = {per_step} completions of up to {rl.max_completion_length} tokens."
        )
        start = time.perf_counter()
        try:
            result = trainer.train(resume_from_checkpoint=run.resume_from)
        finally:
            stop.restore()
        closing_warnings(run, result.global_step)
        summary = rl_summary(cfg, run, items, too_long, len(dataset), result.global_step, time.perf_counter() - start)
        summary.update(trainable_parameters=trainable, total_parameters=total)
        run.publish(trainer, tokenizer, summary, summary_text(summary, run.out), rl_card(cfg, summary, str(run.out)))
    return Result(summary, run.out, model, tokenizer)


def use_vllm(setting: str, device: str) -> bool:
    """rl.generator: 'auto' = vLLM on CUDA with vllm installed; 'vllm' fails clearly without either."""
    installed = importlib.util.find_spec("vllm") is not None
    if setting == "vllm" and device != "cuda":
        raise UserError(f"rl.generator=vllm needs a CUDA GPU (vLLM does not generate on {device.upper()}); set rl.generator=auto or transformers.")
    if setting == "vllm" and not installed:
        raise UserError("rl.generator=vllm needs the vllm package: pip install vllm (on a CUDA machine), or set rl.generator=transformers.")
    return setting == "vllm" or (setting == "auto" and device == "cuda" and installed)


def trl_prompt(tokenizer, text: str, adds_bos: bool) -> str:
    """The rendered prompt as TRL should be given it. TRL tokenizes a text prompt with the special
    tokens added, so a tokenizer that adds its own bos (`adds_bos`: DeepSeek-R1's) would see it
    twice: the template's bos is taken off the text, and the ids come out as `thinktune eval` makes them."""
    bos = tokenizer.bos_token
    return text[len(bos) :] if adds_bos and bos and text.startswith(bos) else text


def prompt_rows(items: Items, tokenizer, rl) -> tuple[Any, int]:
    """The training rows (a datasets.Dataset: prompt, id, gold, options as JSON, opened) and how
    many prompts were left out as longer than rl.max_prompt_length."""
    from datasets import Dataset

    rows, too_long = [], 0
    adds_bos = bool(bos_prefix(tokenizer))
    for item in items.items:
        text = items.rendered(tokenizer, item, rl.ask_answer_line)
        if len(tokenize(tokenizer, text)) > rl.max_prompt_length:
            too_long += 1
            continue
        rows.append(
            {
                "prompt": trl_prompt(tokenizer, text, adds_bos),
                "id": item.id,
                "gold": item.gold,
                "options": json.dumps(item.options, ensure_ascii=False),
                "opened": opens_think(text),
            }
        )
    return Dataset.from_list(rows) if rows else [], too_long


def items_line(items: Items, too_long: int, used: int) -> str:
    removed = ", ".join(f"{n} in {name}" for name, n in items.removed.items()) or "none"
    return f"Items: {items.read} read from {items.source}; removed as questions of an evaluation benchmark: {removed}; {too_long} prompt(s) over rl.max_prompt_length left out; {used} to train on."


def start_adapter(model, cfg, run: Run, checkpointing: bool):
    """The SFT run's adapter made trainable (rl.adapter), or a fresh LoRA from lora.*."""
    from ..weights import attach_adapter

    if cfg.rl.adapter is None:
        return add_lora(model, cfg.lora, checkpointing)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    run.say(f"Continuing the adapter of {cfg.rl.adapter} (its own LoRA settings; lora.* applies only to a fresh adapter).")
    return attach_adapter(model, cfg.rl.adapter, cfg.model.name, trainable=True)


def check_adapter_base(cfg) -> None:
    """rl.adapter must have been trained on model.name: checked before anything is loaded or written."""
    trained = run_config(cfg.rl.adapter) if cfg.rl.adapter else None
    if trained is not None and trained.model.name != cfg.model.name:
        raise UserError(f"rl.adapter={cfg.rl.adapter} was trained on {trained.model.name}, but model.name is {cfg.model.name}: give the same base model.")


def eos_ids(model) -> list[int]:
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    return [] if eos is None else [eos] if isinstance(eos, int) else list(eos)


def grpo_arguments(cfg, device: str, precision: str, checkpoint_dir: Path, vllm: bool, checkpointing: bool):
    from trl import GRPOConfig

    rl = cfg.rl
    return GRPOConfig(
        **run_arguments(cfg, device, precision, checkpoint_dir),
        # one prompt's group of completions per pass; an update = prompts_per_step groups, generated together
        per_device_train_batch_size=rl.num_generations,
        gradient_accumulation_steps=rl.prompts_per_step,
        max_steps=rl.steps,
        learning_rate=rl.lr,
        logging_steps=1,  # every step's rewards: RL steps are few and slow
        # transformers 5's name: TRL's config defaults the old alias, gradient_checkpointing, to True
        activation_checkpointing=checkpointing,
        num_generations=rl.num_generations,
        max_completion_length=rl.max_completion_length,
        temperature=rl.temperature,
        top_p=rl.top_p,
        repetition_penalty=rl.repetition_penalty,
        beta=rl.beta,
        loss_type=rl.loss_type,
        epsilon=rl.epsilon,
        reward_weights=weights(rl),
        mask_truncated_completions=rl.mask_truncated,
        use_vllm=vllm,
        vllm_mode="colocate",
        log_completions=False,  # completions.jsonl holds them
    )


def RlTrainer(*a, run: Run, keep: int | None, **kw) -> Any:  # noqa: N802  (stands for the class, made on first use: TRL is imported only by `thinktune rl`)
    return _trainer_class()(*a, run=run, keep=keep, **kw)


@functools.cache  # one class, made once
def _trainer_class():
    from trl import GRPOTrainer

    class _RlTrainer(GRPOTrainer):
        """GRPOTrainer that seals its checkpoints and stops on a non-finite loss or update."""

        def __init__(self, *a, run: Run, keep: int | None, **kw):
            super().__init__(*a, **kw)
            self.run, self.keep = run, keep
            self.bad_loss: tuple[int, float] | None = None
            self.sane_through = run.start_step
            guard = NonFiniteGuard()
            guard.trainer = self
            self.callback_handler.callbacks.insert(0, guard)
            from transformers import PrinterCallback, ProgressCallback

            self.remove_callback(ProgressCallback)
            self.remove_callback(PrinterCallback)

        def training_step(self, model, inputs, num_items_in_batch=None):
            loss = super().training_step(model, inputs, num_items_in_batch)
            if self.bad_loss is None and not math.isfinite(float(loss)):
                self.bad_loss = (self.state.global_step + 1, float(loss))
            return loss

        def diverged(self, step: int, what: str | None = None):
            if what is None and self.bad_loss:
                what = f"the loss became {self.bad_loss[1]:g}"
            what = what or "the gradient became non-finite (NaN or inf)"
            return divergence_error(Path(self.args.output_dir or "."), self.args.learning_rate, step, what, self.sane_through, self.args.should_save)

        def _save(self, output_dir=None, state_dict=None):
            super()._save(output_dir, state_dict)
            # rl.beta > 0 on rl.adapter: TRL keeps the KL reference as a second PEFT adapter, "ref" (a frozen copy of
            # the start), and PEFT saves every adapter, so ref/ would sit in each checkpoint and the run folder. It is
            # not an output, and on resume TRL copies it again from the start adapter.
            if self.args.should_save and "ref" in getattr(self.model, "peft_config", {}):
                shutil.rmtree(Path(output_dir or self.args.output_dir or ".") / "ref", ignore_errors=True)

        def _save_checkpoint(self, model, trial):
            super()._save_checkpoint(model, trial)
            seal_and_rotate(self, trial, int(self.state.num_input_tokens_seen or 0), self.keep)

    return _RlTrainer


# TRL's log keys -> metrics.jsonl names (rewards/<c>/mean and /std become <c>_mean, <c>_std).
LOG_KEYS = {
    "loss": "loss",
    "learning_rate": "lr",
    "grad_norm": "grad_norm",
    "reward": "reward",
    "reward_std": "reward_std",
    "accuracy": "accuracy",
    "format_rate": "format_rate",
    "unparsed_rate": "unparsed_rate",
    "cut_rate": "cut_rate",
    "completions/mean_length": "completion_length",
    "frac_reward_zero_std": "flat_groups",
    "kl": "kl",
    "entropy": "entropy",
}


class RlProgress(TrainerCallback):
    """TRL's per-step logs as metrics.jsonl records, a Step event and one line of rewards per
    step, and the loud warnings of the known trap: most completions cut at the limit, or groups
    whose rewards do not vary (nothing to learn from)."""

    def __init__(self, run: Run):
        self.run, self.warned = run, set[str]()

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if "reward" not in logs:
            return
        rec = {"step": state.global_step}
        rec.update({new: logs[old] for old, new in LOG_KEYS.items() if logs.get(old) is not None})
        for key, value in logs.items():
            if key.startswith("rewards/") and value is not None:
                _, name, stat = key.split("/")
                rec[f"{name}_{stat}"] = value
        self.run.record(rec)
        self.run.plot()
        self.run.emit(Step(rec["step"], state.max_steps, round(state.epoch or 0.0, 4), rec.get("loss"), rec.get("lr"), rec.get("grad_norm")))
        self.run.say(step_line(rec, state.max_steps))
        self.warn(rec)

    def warn(self, rec: dict) -> None:
        rl = self.run.cfg.rl
        if rec.get("cut_rate", 0) > 0.5 and "cut" not in self.warned:
            self.warned.add("cut")
            self.run.say(
                f"step {rec['step']}: {rec['cut_rate']:.0%} of the completions were cut at rl.max_completion_length={rl.max_completion_length}: "
                "a cut completion has no answer, so it earns no correctness reward and GRPO has little to learn from. Raise the limit (or lower the thinking length).",
                "warning",
            )
        if rec.get("flat_groups", 0) >= 1.0 and "flat" not in self.warned:
            self.warned.add("flat")
            self.run.say(
                f"step {rec['step']}: in every group all {rl.num_generations} completions got the same reward, so the update learns nothing. "
                "If this goes on: more rl.num_generations, a higher rl.temperature, or easier items.",
                "warning",
            )


def closing_warnings(run: Run, steps: int) -> None:
    """At the end, the trap in numbers: how many of this run's steps had most completions cut, and
    how many could teach nothing (every group's rewards equal)."""
    recs = [r for r in run.records if "reward" in r]
    cut = sum(r.get("cut_rate", 0) > 0.5 for r in recs)
    flat = sum(r.get("flat_groups", 0) >= 1.0 for r in recs)
    if recs and cut > len(recs) / 2:
        run.say(f"{cut} of {len(recs)} steps had most completions cut at rl.max_completion_length: raise it, or the run mostly learns to be short.", "warning")
    if recs and flat > len(recs) / 2:
        run.say(f"{flat} of {len(recs)} steps learned nothing: in every group all completions got the same reward.", "warning")


def step_line(rec: dict, max_steps: int) -> str:
    parts = [f"reward {rec['reward']:.3f}"]
    for key, label in (("accuracy", "right"), ("format_rate", "format"), ("unparsed_rate", "unparsed"), ("cut_rate", "cut")):
        if key in rec:
            parts.append(f"{label} {rec[key]:.0%}")
    if "completion_length" in rec:
        parts.append(f"length {rec['completion_length']:.0f}")
    return f"step {rec['step']}/{max_steps}: " + ", ".join(parts)


def rl_summary(cfg, run: Run, items: Items, too_long: int, used: int, steps: int, wall: float) -> dict:
    recs = [r for r in run.records if "reward" in r]

    def first_last(key: str) -> list:
        vals = [r[key] for r in recs if key in r]
        return [vals[0], vals[-1]] if vals else [None, None]

    peak = torch.cuda.max_memory_allocated() if run.device == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024.0
    return {
        "stage": "rl",
        "model": cfg.model.name,
        "adapter_start": cfg.rl.adapter,
        "device": run.device,
        "precision": run.precision,
        "resumed_from_step": run.start_step if run.resume_from else None,
        "items_source": items.source,
        "items_read": items.read,
        "items_removed": items.removed,
        "prompts_too_long": too_long,
        "items_used": used,
        "optimizer_steps": steps,
        "completions": steps * cfg.rl.prompts_per_step * cfg.rl.num_generations,
        "reward_first_last": first_last("reward"),
        "accuracy_first_last": first_last("accuracy"),
        "format_rate_first_last": first_last("format_rate"),
        "cut_rate_mean": sum(r.get("cut_rate", 0) for r in recs) / len(recs) if recs else None,
        "steps_mostly_cut": sum(r.get("cut_rate", 0) > 0.5 for r in recs),
        "steps_without_signal": sum(r.get("flat_groups", 0) >= 1.0 for r in recs),
        "wall_seconds": round(wall, 2),
        "peak_memory_gb": round(peak / 2**30, 3),
    }
