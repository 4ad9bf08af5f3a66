"""The finished run folder's README.md: what was trained, on what, how well, and how to load it.

PEFT's save_pretrained writes a blank model card ("[More Information Needed]", the base model
named by whatever path it was loaded from); this one replaces it with what the run knows
(issue 11). Hub front matter is included so the folder can be uploaded as it is.
"""

from __future__ import annotations

from pathlib import Path

from .model import resolve


def _loading_code(model_name: str, run_dir: str) -> str:
    """Python that loads base + adapter with transformers and PEFT alone (no thinktune)."""
    source = resolve(model_name)
    gguf = f", gguf_file={source.gguf_file!r}" if source.gguf_file else ""
    return (
        "from peft import PeftModel\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
        f"base = AutoModelForCausalLM.from_pretrained({source.path!r}{gguf})\n"
        f"model = PeftModel.from_pretrained(base, {run_dir!r})\n"
        f"tokenizer = AutoTokenizer.from_pretrained({run_dir!r})\n"
    )


def _hub_id(name: str) -> str | None:
    """The hub id a model name stands for (r1-1.5b included), None for files and folders."""
    source = resolve(name)
    path = source.path
    return path if source.gguf_file is None and path.count("/") == 1 and not Path(path).expanduser().exists() else None


def _loss(x) -> str:
    return "not measured" if x is None else f"{x:.4f}"


def model_card(cfg, summary: dict, run_dir: str) -> str:
    """Markdown with hub front matter; every number comes from the run's config and summary."""
    front = ["---", "library_name: peft", "tags: [thinktune, lora, sft, reasoning]"]
    hub_id = _hub_id(cfg.model.name)
    if hub_id:
        front.insert(1, f"base_model: {hub_id}")
    lines = front + _what_and_how(cfg, summary)
    if summary.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in summary["warnings"]]
    return "\n".join(lines + _usage(cfg, run_dir))


def _what_and_how(cfg, summary: dict) -> list[str]:
    """The data, the recipe and the result, as the card's Markdown lines."""
    d, t, lo = summary["data"], cfg.train, cfg.lora
    hub = f" (config `{cfg.data.hub_config}`, split `{cfg.data.split}`)" if not Path(cfg.data.path).exists() else ""
    dup = (
        f" {d['duplicate_groups']} question(s) asked by several rows ({d['duplicate_rows']} rows) were kept whole on one side of the split."
        if d.get("duplicate_groups")
        else ""
    )
    return [
        "---",
        "",
        f"# LoRA adapter for {cfg.model.name}",
        "",
        f"Fine-tuned with thinktune (supervised fine-tuning, LoRA) on chain-of-thought data: `{cfg.data.path}`{hub}.",
        "",
        "## Data",
        "",
        f"- {summary['rows_read']} rows read, {summary['rows_used']} used: {d['train_rows']} trained on, {d['val_rows']} held out (never trained on) to measure the loss.{dup}",
        f"- Max length {d['max_length']} tokens ({d['max_length_reason']}); {d['over_length']} rows over it: "
        f"{summary['rows_dropped']} dropped, {summary['rows_truncated']} truncated "
        f"({d.get('train_answer_lost', 0)} trained rows lost their whole answer).",
        f"- {summary['labelled_tokens_per_epoch']:,} labelled tokens per epoch (reasoning, answer and end token; {'the question too' if cfg.data.train_on_prompt else 'not the question'}).",
        "",
        "## Recipe",
        "",
        "| setting | value |",
        "|---|---|",
        f"| LoRA | r={lo.r}, alpha={lo.alpha}, dropout={lo.dropout}, on {', '.join(lo.target_modules)}{variants(lo)} |",
        f"| trainable parameters | {summary['trainable_parameters']:,} of {summary['total_parameters']:,} |",
        f"| optimizer | AdamW, lr {t.lr:g} ({t.lr_scheduler} schedule, warmup ratio {t.warmup_ratio:g}), weight decay {t.weight_decay:g} |",
        f"| batch | {summary['effective_batch']} rows per update ({summary['processes']} process(es) x {t.batch_size} rows x {t.grad_accum} accumulation) |",
        f"| epochs / updates | {t.epochs:g} / {summary['optimizer_steps']} |",
        f"| precision / device | {summary['precision']} / {summary['device']} |",
        f"| seed | {t.seed} |",
        "",
        "The complete settings are in `config.yaml`; `thinktune train --config config.yaml --out NEW_FOLDER` runs them again.",
        "",
        "## Result",
        "",
        f"- Held-out loss per token: {_loss(summary['eval_loss_start'])} before training, {_loss(summary['eval_loss_end'])} after.",
        f"- Training loss (mean over the run): {_loss(summary['train_loss'])}.",
        f"- {summary['tokens_trained']:,} tokens in {summary['wall_seconds']:.0f} s ({summary['tokens_per_second']:.0f} tokens/s), peak memory {summary['peak_memory_gb']:.2f} GB.",
        "- Curves: `loss_curve.png`; every logged step: `metrics.jsonl`; all figures: `summary.json`.",
    ]


def _usage(cfg, run_dir: str) -> list[str]:
    return [
        "",
        "## How to use it",
        "",
        "With transformers and PEFT:",
        "",
        "```python",
        _loading_code(cfg.model.name, run_dir).rstrip(),
        "```",
        "",
        "With thinktune:",
        "",
        "```",
        f"thinktune chat --adapter {run_dir}                  # talk to it, thinking shown",
        f"thinktune compare --adapter {run_dir} --bench medqa # base vs fine-tuned, measured",
        f"thinktune merge {run_dir} --out {run_dir}-merged    # a plain transformers folder",
        f"thinktune export gguf {run_dir} --out {run_dir}.gguf # llama.cpp / Ollama",
        "```",
        "",
    ]


def variants(lo) -> str:
    """The LoRA variants a run used, as the card's LoRA row names them (issue 15)."""
    names = [
        name
        for name, on in (
            ("DoRA", lo.use_dora),
            ("rsLoRA", lo.use_rslora),
            ("PiSSA start, saved as a plain LoRA of rank 2r", lo.init == "pissa"),
            (f"LoRA+ (B at {lo.loraplus_lr_ratio:g}x lr)" if lo.loraplus_lr_ratio else "", lo.loraplus_lr_ratio),
        )
        if on
    ]
    return f"; {', '.join(names)}" if names else ""
