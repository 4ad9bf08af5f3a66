"""What a finished RL run says: its closing line and its README.md (model card)."""

from __future__ import annotations

from pathlib import Path

from ..card import _hub_id, _loading_code


def _pair(pair: list, pct: bool = False) -> str:
    a, b = pair
    if a is None:
        return "not measured"
    return f"{a:.0%} -> {b:.0%}" if pct else f"{a:.3f} -> {b:.3f}"


def summary_text(s: dict, out: Path) -> str:
    return (
        f"Done in {s['wall_seconds']:.0f} s: {s['optimizer_steps']} GRPO steps, {s['completions']} completions; reward (first -> last step) "
        f"{_pair(s['reward_first_last'])}, right {_pair(s['accuracy_first_last'], True)}, format {_pair(s['format_rate_first_last'], True)}; "
        f"peak memory {s['peak_memory_gb']:.2f} GB on {s['device']}.\n"
        f"Run folder {out}: adapter_model.safetensors, adapter_config.json, tokenizer, config.yaml, metrics.jsonl, "
        "reward_curve.png, completions.jsonl (what was rewarded), summary.json, README.md. "
        f"Measure it: thinktune eval --adapter {out} --bench medqa --answer-line"
    )


def rl_card(cfg, s: dict, run_dir: str) -> str:
    """Markdown with hub front matter; every number from the run's config and summary."""
    rl = cfg.rl
    front = ["---", "library_name: peft", "tags: [thinktune, lora, grpo, reinforcement-learning, reasoning]", "---"]
    hub_id = _hub_id(cfg.model.name)
    if hub_id:
        front.insert(1, f"base_model: {hub_id}")
    removed = ", ".join(f"{n} in {name}" for name, n in s["items_removed"].items()) or "none"
    start = f"the SFT adapter of `{rl.adapter}`" if rl.adapter else "a fresh LoRA"
    lines = front + [
        "",
        f"# LoRA adapter for {cfg.model.name}, trained with GRPO",
        "",
        f"Reinforcement learning on answers that can be checked (thinktune rl, TRL's GRPOTrainer), starting from {start}.",
        "",
        "## Data",
        "",
        f"- `{s['items_source']}`: {s['items_read']} items read; removed because their question is in an evaluation benchmark: {removed}; "
        f"{s['prompts_too_long']} prompts over {rl.max_prompt_length} tokens left out; {s['items_used']} trained on.",
        "",
        "## Recipe",
        "",
        "| setting | value |",
        "|---|---|",
        f"| updates | {s['optimizer_steps']} x {rl.prompts_per_step} prompts x {rl.num_generations} completions |",
        f"| completion limit | {rl.max_completion_length} tokens (overlong penalty over the last {rl.overlong_buffer}) |",
        f"| sampling | temperature {rl.temperature}, top-p {rl.top_p} |",
        f"| loss | {rl.loss_type}, clip {rl.epsilon}, KL weight {rl.beta}, lr {rl.lr:g} |",
        f"| reward weights | correctness {rl.correctness_weight}, format {rl.format_weight}, stated answer {rl.stated_weight}, length {rl.length_weight} |",
        "",
        "## During training (first -> last step)",
        "",
        f"- reward {_pair(s['reward_first_last'])}; right {_pair(s['accuracy_first_last'], True)}; format {_pair(s['format_rate_first_last'], True)}.",
        "- These are the training prompts' own completions: measure held-out accuracy with `thinktune eval`.",
    ]
    if s.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in s["warnings"]]
    lines += ["", "## Use", "", "```python", _loading_code(cfg.model.name, run_dir), "```", ""]
    return "\n".join(lines)
