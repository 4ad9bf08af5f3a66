"""Every command's flags, in one place: `thinktune --help` and each command's `--help`.

Light to import (no torch): the CLI parses its arguments before it loads anything heavy.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import textwrap

from . import __version__
from . import config as config_mod
from .decoding import Decoding


def _knob_help(stage: str = "sft") -> str:
    """The settings a stage reads: SFT's (no rl.*), or RL's (no data.*: its items are rl.data)."""
    lines = ["settings (use --set section.key=value; defaults are the reference recipe):"]
    skip = "rl." if stage == "sft" else "data."
    knobs = [k for k in config_mod.knobs() if not k[0].startswith(skip)]
    width = max(len(name) for name, _, _ in knobs) + 2  # the longest name still gets a gap (issue 11)
    for name, f, _ in knobs:
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        rng = f.metadata.get("range")  # declared on the knob: the range the config check enforces
        body = f"{f.metadata['help']} [default: {default!r}{f'; {rng}' if rng else ''}]"
        lines.append(textwrap.fill(body, 100, initial_indent=f"  {name:{width}s}", subsequent_indent=" " * (width + 2)))
    return "\n".join(lines)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (e.g. examples/medical_r1.yaml); without it the reference recipe's defaults apply.")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Override one setting, e.g. --set lora.r=32 (repeatable).")
    p.add_argument("--model", help="Base model: hub id, local folder, .gguf file, 'r1-1.5b', 'r1-7b' or 'smollm2-demo' (sets model.name).")
    p.add_argument("--data", help="Training data file or hub dataset name (sets data.path).")


def _add_decoding(p: argparse.ArgumentParser, greedy_why: str | None = None, seed: bool = True, batch: bool = True, sweep: bool = False) -> None:
    """The generation flags, defined once (defaults: decoding.Decoding, DeepSeek's advice for R1
    models); a command that decodes greedily by default passes the reason."""
    d = Decoding()
    # greedy by default: temperature 0, and no nucleus cut-off should sampling be asked for
    temp, top_p = (0.0, 1.0) if greedy_why else (d.temperature, d.top_p)
    why = f"; default 0 = greedy: {greedy_why}" if greedy_why else "; 0 = greedy"
    p.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens, help="Generation budget per answer, thinking included.")
    p.add_argument("--temperature", type=float, default=temp, help=f"Sampling temperature (DeepSeek advises {d.temperature} for R1 models){why}.")
    p.add_argument("--top-p", type=float, default=top_p, help=f"Nucleus sampling cut-off when sampling (DeepSeek advises {d.top_p}; default {top_p}).")
    if batch:
        p.add_argument(
            "--batch-size",
            type=int,
            default=d.batch_size,
            help="Rows generated at once; a finished row's place goes to the next prompt at once. More is faster and takes more memory (lowered to what fits).",
        )
    several = " One number, or a comma list for a sweep (e.g. 128,256,512,1024): accuracy against thinking budget, as a table and a plot." if sweep else ""
    p.add_argument(
        "--max-thinking-tokens",
        type=_budgets if sweep else int,
        help=f"Thinking budget: after N thinking tokens, </think> is inserted at the next word boundary and the model answers in the tokens left (default: no limit).{several}",
    )
    p.add_argument(
        "--stop-loops",
        action=argparse.BooleanOptionalAction,
        default=d.stop_loops,
        help="Stop an output once it repeats the same passage three times in a row (stop reason 'loop'; it would only run on to the "
        "token limit); --no-stop-loops lets it run.",
    )
    if seed:
        p.add_argument("--seed", type=int, default=d.seed, help="Sampling seed (chat: by default a different sampling each session).")


def _budgets(text: str) -> list[int]:
    """`--max-thinking-tokens 128,256`: the budgets of a sweep, each a whole number of 0 or more."""
    try:
        values = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number or a comma list like 128,256,512") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: budgets are 0 or more tokens")
    return values


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--backend",
        choices=("hf", "vllm"),
        default="hf",
        help="hf: transformers with thinktune's continuous batching, on any device (default); vllm: vLLM on an NVIDIA GPU, the adapter as a LoRA request.",
    )


def _add_overwrite(p: argparse.ArgumentParser, what: str) -> None:
    """One flag, one meaning everywhere (outputs.claim): replace what thinktune wrote before; a
    folder holding anything else, or a source the command reads, is never replaced."""
    p.add_argument("--overwrite", action="store_true", help=f"Replace {what} written by an earlier thinktune command (never anything else).")


def _add_eval_args(p: argparse.ArgumentParser, out: str) -> None:
    p.add_argument("--model", help="Base model (default: the one the adapter's run was trained from).")
    p.add_argument("--adapter", help="A thinktune run folder (or any PEFT adapter folder).")
    p.add_argument("--bench", default="medqa", help="medqa, medmcqa, pubmedqa, cmb (from ../shared/data/eval or $THINKTUNE_EVAL_DIR) or a file of that shape.")
    p.add_argument("--limit", type=int, help="Only the first N items (a seeded random N with --seed).")
    p.add_argument("--seed", type=int, help="Sample the --limit items at random with this seed (also the sampling seed; default 0).")
    p.add_argument("--out", default=out, help=f"Output folder (default {out}).")
    _add_overwrite(p, "the --out folder")
    p.add_argument("--answer-line", action="store_true", help="Ask the model to end with 'The answer is X.'")
    _add_backend(p)
    _add_decoding(p, greedy_why="a score must not depend on a sampling seed", seed=False, sweep=True)


def _add_train(sub) -> None:
    t = sub.add_parser("train", help="Fine-tune a model with LoRA.", epilog=_knob_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(t)
    t.add_argument("--out", help="Run folder to write (sets train.output_dir).")
    t.add_argument("--limit", type=int, help="Use at most this many rows (sets data.limit).")
    t.add_argument("--epochs", type=float, help="Passes over the data (sets train.epochs).")
    t.add_argument("--lr", type=float, help="Learning rate (sets train.lr).")
    _add_overwrite(t, "the run in --out (train.overwrite=true)")
    t.add_argument("--resume", action="store_true", help="Continue an interrupted run of --out from its newest complete checkpoint (same command otherwise).")
    t.add_argument(
        "--num-processes",
        type=int,
        default=1,
        metavar="N",
        help="Train on N processes of this machine (one per GPU; gloo on CPU) via torchrun; effective batch = N x batch_size x grad_accum.",
    )
    t.add_argument(
        "--events",
        choices=["console", "json"],
        default="console",
        help="Progress as lines for a person (default) or as one JSON event per line on stdout (what the web page reads).",
    )


def _add_rl(sub) -> None:
    r = sub.add_parser(
        "rl",
        help="Stage two: reinforcement learning (GRPO) on answers that can be checked, continuing an SFT adapter.",
        epilog=_knob_help("rl"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("--config", help="YAML config file (e.g. examples/medical_rl.yaml); without it the defaults apply.")
    r.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Override one setting, e.g. --set rl.steps=50 (repeatable).")
    r.add_argument("--model", help="Base model (sets model.name): the one the SFT adapter was trained on.")
    r.add_argument("--adapter", help="The SFT run folder to continue (sets rl.adapter); 'none' = a fresh LoRA on the base.")
    r.add_argument("--data", help="Items with checkable answers: medqa, medmcqa, pubmedqa, cmb, or a file (sets rl.data).")
    r.add_argument("--out", help="Run folder to write (sets train.output_dir).")
    r.add_argument("--steps", type=int, help="Weight updates to make (sets rl.steps).")
    r.add_argument("--lr", type=float, help="Learning rate (sets rl.lr).")
    _add_overwrite(r, "the run in --out (train.overwrite=true)")
    r.add_argument("--resume", action="store_true", help="Continue an interrupted run of --out from its newest complete checkpoint (same command otherwise).")
    r.add_argument(
        "--events",
        choices=["console", "json"],
        default="console",
        help="Progress as lines for a person (default) or as one JSON event per line on stdout.",
    )
    r.add_argument(
        "--demo",
        action="store_true",
        help="The offline demo: GRPO on the SFT demo's adapter (trained first if absent) with examples/demo_rl.yaml, then before/after on held-out items.",
    )
    r.add_argument("--heldout", type=int, default=48, help="--demo: how many held-out items measure before/after (default 48).")


def _add_plan(sub) -> None:
    pl = sub.add_parser("plan", help="Before a run: expected peak memory by part, and the settings that fit a memory budget (no weights loaded).")
    pl.add_argument("--model", help="Hub id, local folder or config.json, or a known name (r1-1.5b, r1-7b, smollm2-demo); default: the config's model.name.")
    pl.add_argument("--config", help="Take the model, LoRA rank, targets and dropout from this YAML.")
    pl.add_argument("--memory", type=float, default=8.0, help="Memory budget in GiB to fit into (default 8, an RTX 4060).")
    pl.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="Plan for a CUDA GPU (bf16, NF4 for QLoRA) or a CPU (fp32).")
    pl.add_argument("--method", choices=["lora", "qlora", "full"], help="Only this method (default: LoRA, then QLoRA).")
    pl.add_argument(
        "--headroom",
        type=float,
        default=0.5,
        help="GiB of the budget kept free for what the estimate leaves out: a screen on the same card, the CUDA allocator's slack, other programs (default 0.5).",
    )
    pl.add_argument(
        "--max-length",
        type=int,
        help="Longest max length the plan may choose, a hard limit; it tries this, then 2048, 1024, 512 below it (default: 4096, 2048, 1024, 512, then the longest that fits, or the config's data.max_length).",
    )
    pl.add_argument("--batch-size", type=int, help="Only this per-device batch (default: 4, 2, 1).")


def _add_data(sub) -> None:
    d = sub.add_parser("data", help="Inspect training data.")
    dsub = d.add_subparsers(dest="data_command", required=True)
    c = dsub.add_parser(
        "check",
        help="Run the data stages with the model's tokenizer and report what train would train (no training).",
        epilog=_knob_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_common(c)
    c.add_argument("--limit", type=int, help="Check at most this many rows (sets data.limit).")
    c.add_argument("--rows", action="store_true", help="Also list every row: its fate (train, held-out, dropped), tokens and why.")
    c.add_argument("--json", action="store_true", help="Print the full report, every row included, as JSON.")


def _add_eval(sub) -> None:
    e = sub.add_parser("eval", help="Score a model (+ adapter) on a benchmark, or its held-out loss on a CoT file.")
    _add_eval_args(e, "runs/eval")
    e.add_argument("--loss", metavar="FILE", help="Instead of a benchmark: mean per-token loss of the assistant part of this CoT file.")
    e.add_argument("--samples", type=int, default=1, help="With sampling: run K samples per item and report mean and spread.")
    k = sub.add_parser("compare", help="Base vs base + adapter on the same items, with report.html and report.md.")
    _add_eval_args(k, "runs/compare")
    k.add_argument("--questions", metavar="FILE", help="CoT file whose held-out loss is compared before/after.")


def _add_generate(sub) -> None:
    g = sub.add_parser("generate", help="Batched generation for a file of prompts, written as JSONL.")
    g.add_argument("--model", help="Base model (default: the one the adapter's run was trained from).")
    g.add_argument("--adapter", help="A thinktune run folder (or any PEFT adapter folder).")
    g.add_argument("--input", required=True, help="JSON/JSONL/CSV/Parquet rows with a prompt, question or messages field (the training format works).")
    g.add_argument("--out", required=True, help="Output .jsonl file: thinking, answer, token counts and stop reason per row.")
    _add_overwrite(g, "the --out file")
    _add_decoding(g)
    _add_backend(g)


def _add_chat(sub) -> None:
    c = sub.add_parser("chat", help="Chat with a model (+ adapter) in the terminal, its thinking shown apart from the answer.")
    c.add_argument("--model", help="Base model (default: the one the adapter's run was trained from).")
    c.add_argument("--adapter", help="A thinktune run folder (or any PEFT adapter folder).")
    _add_decoding(c, batch=False)
    c.set_defaults(seed=None)  # chat: a different sampling each session unless --seed
    c.add_argument("--hide-thinking", action="store_true", help="Fold the thinking into a one-line [thinking: N tokens] placeholder.")
    c.add_argument("--no-color", action="store_true", help="Plain text without ANSI styling (also when stdout is not a terminal).")


def _add_export(sub) -> None:
    r = sub.add_parser("merge", help="Fold a run's adapter into its base: a plain transformers folder.")
    r.add_argument("run_dir", help="The thinktune run folder.")
    r.add_argument("--out", required=True, help="Folder for the merged model.")
    r.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"], help="Weight format of the merged model (bf16 halves the size of fp32).")
    _add_overwrite(r, "the --out folder")
    x = sub.add_parser("export", help="Export a model for other runtimes.")
    xsub = x.add_subparsers(dest="export_command", required=True)
    xg = xsub.add_parser("gguf", help="A run folder or merged folder -> GGUF file (llama.cpp, Ollama) + Modelfile.")
    xg.add_argument("source", help="A thinktune run folder (merged on the fly) or a `thinktune merge` folder.")
    xg.add_argument("--out", required=True, help="The .gguf file to write; an Ollama Modelfile (NAME.Modelfile) is written beside it.")
    _add_overwrite(xg, "the .gguf file and its Modelfile")
    xg.add_argument("--type", default="f16", choices=["f16", "q8_0"], help="f16 keeps full quality; q8_0 is about half the size at a small accuracy cost.")


def _add_demo(sub) -> None:
    m = sub.add_parser("demo", help="Fine-tune the small offline demo model and show before/after.")
    m.add_argument("--config", default="examples/demo.yaml", help="Demo config (default examples/demo.yaml).")
    m.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Override one setting (repeatable).")
    m.add_argument("--out", help="Run folder (default from the demo config).")
    m.add_argument("--questions", type=int, default=2, help="How many held-out questions to show before/after.")
    m.add_argument("--max-new-tokens", type=int, default=1024, help="Generation budget for each answer (thinking included).")


def _add_ui(sub) -> None:
    u = sub.add_parser("ui", help="The web page: data check, settings, training with live charts, runs, compare and chat, export (English and Chinese).")
    u.add_argument(
        "--host", default="127.0.0.1", help="Address to listen on (default 127.0.0.1: this machine only); another host is reachable by others, and says so."
    )
    u.add_argument("--port", type=int, default=7860, help="Port to listen on (default 7860).")
    u.add_argument("--lang", choices=["en", "zh"], default="en", help="Language of the address printed (both are served: English at /, Chinese at /zh/).")
    u.add_argument("--config", help="YAML config the settings form starts from (e.g. examples/demo.yaml); default: the reference recipe.")
    u.add_argument("--workspace", default=".", help="Folder the page's runs, configs and uploads go in (runs/, configs/, data/); default: the current folder.")
    u.add_argument(
        "--password",
        default=os.environ.get("THINKTUNE_UI_PASSWORD"),
        help="Ask for this password (user name thinktune); default $THINKTUNE_UI_PASSWORD, else none.",
    )


def build_parser() -> argparse.ArgumentParser:
    """Every command's flags (one place for all parsers)."""
    parser = argparse.ArgumentParser(prog="thinktune", description="Fine-tune reasoning models on chain-of-thought data with LoRA, and measure what changed.")
    parser.add_argument("--version", action="version", version=f"thinktune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_train, _add_rl, _add_plan, _add_data, _add_eval, _add_generate, _add_export, _add_chat, _add_demo, _add_ui):
        add(sub)
    return parser


# `thinktune rl`'s flags -> the settings they set.
RL_FLAG_SETTINGS = {"model": "model.name", "adapter": "rl.adapter", "data": "rl.data", "out": "train.output_dir", "steps": "rl.steps", "lr": "rl.lr"}
# CLI flag -> the setting it sets (typed: the value goes into the config as parsed, checked there).
FLAG_SETTINGS = {"model": "model.name", "data": "data.path", "out": "train.output_dir", "limit": "data.limit", "epochs": "train.epochs", "lr": "train.lr"}
