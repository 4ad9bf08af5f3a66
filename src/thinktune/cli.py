"""The `thinktune` command: a thin layer of flags over the library functions."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import textwrap
import warnings

from . import __version__
from . import config as config_mod
from .errors import UserError

DEMO_MODEL = "smollm2-demo"


def _knob_help() -> str:
    lines = ["settings (use --set section.key=value; defaults are the reference recipe):"]
    for name, f, _ in config_mod.knobs():
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        body = f"{f.metadata['help']} [default: {default!r}]"
        lines.append(textwrap.fill(body, 100, initial_indent=f"  {name:28s}", subsequent_indent=" " * 30))
    return "\n".join(lines)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (e.g. examples/medical_r1.yaml); without it the reference recipe's defaults apply.")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Override one setting, e.g. --set lora.r=32 (repeatable).")
    p.add_argument("--model", help="Base model: hub id, local folder, .gguf file or 'smollm2-demo' (sets model.name).")
    p.add_argument("--data", help="Training data file or hub dataset name (sets data.path).")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="thinktune", description="Fine-tune reasoning models on chain-of-thought data with LoRA, and measure what changed.")
    parser.add_argument("--version", action="version", version=f"thinktune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="Fine-tune a model with LoRA.", epilog=_knob_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(t)
    t.add_argument("--out", help="Run folder to write (sets train.output_dir).")
    t.add_argument("--limit", type=int, help="Use at most this many rows (sets data.limit).")
    t.add_argument("--epochs", type=float, help="Passes over the data (sets train.epochs).")
    t.add_argument("--lr", type=float, help="Learning rate (sets train.lr).")
    t.add_argument("--overwrite", action="store_true", help="Replace an existing run in the output folder.")

    d = sub.add_parser("data", help="Inspect training data.")
    dsub = d.add_subparsers(dest="data_command", required=True)
    c = dsub.add_parser("check", help="Run the data stages and report every row's fate (no training).", epilog=_knob_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(c)
    c.add_argument("--json", action="store_true", help="Print the full report as JSON.")

    m = sub.add_parser("demo", help="Fine-tune the small offline demo model and show before/after.")
    m.add_argument("--config", default="examples/demo.yaml", help="Demo config (default examples/demo.yaml).")
    m.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Override one setting (repeatable).")
    m.add_argument("--out", help="Run folder (default from the demo config).")
    m.add_argument("--questions", type=int, default=2, help="How many held-out questions to show before/after.")
    m.add_argument("--max-new-tokens", type=int, default=1024, help="Generation budget for each answer (thinking included).")
    return parser


def resolve_config(args, default_model: str | None = None):
    overrides = list(args.set)
    flags = {"model": "model.name", "data": "data.path", "out": "train.output_dir", "limit": "data.limit", "epochs": "train.epochs", "lr": "train.lr"}
    for attr, key in flags.items():
        value = getattr(args, attr, None)
        if value is not None:
            overrides.append(f"{key}={json.dumps(value) if not isinstance(value, str) else value}")
    if getattr(args, "overwrite", False):
        overrides.append("train.overwrite=true")
    cfg = config_mod.load(args.config, overrides)
    if default_model and not args.config and args.model is None and not any(o.startswith("model.name=") for o in args.set):
        cfg.model.name = default_model
    return cfg


def cmd_train(args) -> int:
    from .train import train

    train(resolve_config(args))
    return 0


def cmd_data_check(args) -> int:
    from .data import prepare
    from .model import load_tokenizer, resolve

    cfg = resolve_config(args, default_model=DEMO_MODEL)
    tokenizer = load_tokenizer(resolve(cfg.model.name))
    report = prepare(cfg.data, tokenizer, cfg.train.seed).report
    if args.json:
        print(json.dumps({"model": cfg.model.name, **report.to_dict()}, indent=2, ensure_ascii=False))
        return 0
    from .train import print_data_report

    print(f"{'row':>5}  {'fate':<13}{'tokens':>7}{'prompt':>8}  note")
    for f in report.rows:
        print(f"{f.row:>5}  {f.fate:<13}{f.tokens:>7}{f.prompt_tokens:>8}  {f.note}")
    print(f"\nModel (tokenizer): {cfg.model.name}; rendering: {report.template}; lengths median {report.length_median:g}, p90 {report.length_p90}, max {report.length_max} tokens.")
    print_data_report(report)
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    cfg = config_mod.load(args.config, list(args.set) + ([f"train.output_dir={args.out}"] if args.out else []))
    run_demo(cfg, n_questions=args.questions, max_new_tokens=args.max_new_tokens)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # PEFT 0.21 calls a transformers API deprecated in 5.x on every LoRA wrap: noise for users.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    handler = {"train": cmd_train, "demo": cmd_demo, "data": cmd_data_check}[args.command]
    try:
        return handler(args)
    except UserError as e:
        print(f"thinktune: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("thinktune: interrupted; nothing was written to the run folder.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
