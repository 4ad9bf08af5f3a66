"""The `thinktune` command: a thin layer of flags over the library functions."""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import sys
import textwrap
import warnings
from pathlib import Path

from . import __version__
from . import config as config_mod
from .errors import UserError

DEMO_MODEL = "smollm2-demo"


def _knob_help() -> str:
    lines = ["settings (use --set section.key=value; defaults are the reference recipe):"]
    knobs = list(config_mod.knobs())
    width = max(len(name) for name, _, _ in knobs) + 2  # the longest name still gets a gap (issue 11)
    for name, f, _ in knobs:
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        body = f"{f.metadata['help']} [default: {default!r}]"
        lines.append(textwrap.fill(body, 100, initial_indent=f"  {name:{width}s}", subsequent_indent=" " * (width + 2)))
    return "\n".join(lines)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config file (e.g. examples/medical_r1.yaml); without it the reference recipe's defaults apply.")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="Override one setting, e.g. --set lora.r=32 (repeatable).")
    p.add_argument("--model", help="Base model: hub id, local folder, .gguf file or 'smollm2-demo' (sets model.name).")
    p.add_argument("--data", help="Training data file or hub dataset name (sets data.path).")


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="Base model (default: the one the adapter's run was trained from).")
    p.add_argument("--adapter", help="A thinktune run folder (or any PEFT adapter folder).")
    p.add_argument("--bench", default="medqa", help="medqa, medmcqa, pubmedqa, cmb (from ../shared/data/eval or $THINKTUNE_EVAL_DIR) or a file of that shape.")
    p.add_argument("--limit", type=int, help="Only the first N items (a seeded random N with --seed).")
    p.add_argument("--seed", type=int, help="Sample the --limit items at random with this seed.")
    p.add_argument("--out", default="runs/eval", help="Output folder (default runs/eval).")
    p.add_argument("--max-new-tokens", type=int, default=2048, help="Generation budget per item, thinking included.")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); DeepSeek advises 0.6 for R1 models.")
    p.add_argument("--top-p", type=float, default=1.0, help="Nucleus sampling cut-off when sampling (DeepSeek advises 0.95).")
    p.add_argument("--batch-size", type=int, default=8, help="Prompts generated together (left-padded).")
    p.add_argument("--answer-line", action="store_true", help="Ask the model to end with 'The answer is X.'")


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
    t.add_argument("--resume", action="store_true", help="Continue an interrupted run of --out from its newest complete checkpoint (same command otherwise).")
    t.add_argument("--num-processes", type=int, default=1, metavar="N", help="Train on N processes of this machine (one per GPU; gloo on CPU) via torchrun; effective batch = N x batch_size x grad_accum.")

    pl = sub.add_parser("plan", help="Before a run: expected peak memory by part, and the settings that fit a memory budget (no weights loaded).")
    pl.add_argument("--model", help="Hub id, local folder or config.json, or a known name (r1-1.5b, r1-7b, smollm2-demo); default: the config's model.name.")
    pl.add_argument("--config", help="Take the model, LoRA rank, targets and dropout from this YAML.")
    pl.add_argument("--memory", type=float, default=8.0, help="Memory budget in GiB to fit into (default 8, an RTX 4060).")
    pl.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="Plan for a CUDA GPU (bf16, NF4 for QLoRA) or a CPU (fp32).")
    pl.add_argument("--method", choices=["lora", "qlora", "full"], help="Only this method (default: LoRA, then QLoRA).")
    pl.add_argument("--max-length", type=int, help="Only this max length (default: 4096, 2048, 1024, 512, then the longest that fits).")
    pl.add_argument("--batch-size", type=int, help="Only this per-device batch (default: 4, 2, 1).")

    d = sub.add_parser("data", help="Inspect training data.")
    dsub = d.add_subparsers(dest="data_command", required=True)
    c = dsub.add_parser("check", help="Run the data stages and report every row's fate (no training).", epilog=_knob_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(c)
    c.add_argument("--json", action="store_true", help="Print the full report as JSON.")

    e = sub.add_parser("eval", help="Score a model (+ adapter) on a benchmark, or its held-out loss on a CoT file.")
    _add_eval_args(e)
    e.add_argument("--loss", metavar="FILE", help="Instead of a benchmark: mean per-token loss of the assistant part of this CoT file.")
    e.add_argument("--samples", type=int, default=1, help="With sampling: run K samples per item and report mean and spread.")

    k = sub.add_parser("compare", help="Base vs base + adapter on the same items, with report.html and report.md.")
    _add_eval_args(k)
    k.add_argument("--questions", metavar="FILE", help="CoT file whose held-out loss is compared before/after.")

    g = sub.add_parser("generate", help="Batched generation for a file of prompts, written as JSONL.")
    g.add_argument("--model", help="Base model (default: the one the adapter's run was trained from).")
    g.add_argument("--adapter", help="A thinktune run folder (or any PEFT adapter folder).")
    g.add_argument("--input", required=True, help="JSON/JSONL/CSV/Parquet rows with a prompt, question or messages field (the training format works).")
    g.add_argument("--out", required=True, help="Output .jsonl file: thinking, answer, token counts and stop reason per row.")
    g.add_argument("--max-new-tokens", type=int, default=2048, help="Generation budget per row, thinking included.")
    g.add_argument("--temperature", type=float, default=0.6, help="Sampling temperature (DeepSeek's advice for R1 models); 0 = greedy.")
    g.add_argument("--top-p", type=float, default=0.95, help="Nucleus sampling cut-off.")
    g.add_argument("--batch-size", type=int, default=8, help="Prompts generated together (left-padded).")
    g.add_argument("--seed", type=int, default=0, help="Sampling seed.")

    r = sub.add_parser("merge", help="Fold a run's adapter into its base: a plain transformers folder.")
    r.add_argument("run_dir", help="The thinktune run folder.")
    r.add_argument("--out", required=True, help="Folder for the merged model.")
    r.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"], help="Weight format of the merged model (bf16 halves the size of fp32).")
    r.add_argument("--overwrite", action="store_true", help="Replace a non-empty --out folder.")

    x = sub.add_parser("export", help="Export a model for other runtimes.")
    xsub = x.add_subparsers(dest="export_command", required=True)
    xg = xsub.add_parser("gguf", help="A run folder or merged folder -> GGUF file (llama.cpp, Ollama) + Modelfile.")
    xg.add_argument("source", help="A thinktune run folder (merged on the fly) or a `thinktune merge` folder.")
    xg.add_argument("--out", required=True, help="The .gguf file to write; an Ollama Modelfile is written beside it.")
    xg.add_argument("--type", default="f16", choices=["f16", "q8_0"], help="f16 keeps full quality; q8_0 is about half the size at a small accuracy cost.")

    from .chat import add_chat_parser

    add_chat_parser(sub)

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
            # JSON is YAML: a path like 2024-06-01 or 001 stays a string instead of a date or int.
            overrides.append(f"{key}={json.dumps(value)}")
    if getattr(args, "overwrite", False):
        overrides.append("train.overwrite=true")
    cfg = config_mod.load(args.config, overrides)
    if default_model and not args.config and args.model is None and not any(o.startswith("model.name=") for o in args.set):
        cfg.model.name = default_model
    return cfg


def cmd_train(args) -> int:
    if args.num_processes > 1 and "LOCAL_RANK" not in os.environ:
        return _launch(args.num_processes, args.argv)
    if args.num_processes < 1:
        raise UserError("--num-processes must be at least 1.")
    from .train import train

    train(resolve_config(args), resume=args.resume)
    return 0


def _launch(n: int, argv: list[str]) -> int:
    """Re-run this same command as N processes with torch's elastic launcher (what `torchrun`
    and `accelerate launch` use); the children see LOCAL_RANK and train instead of launching."""
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    rest, skip = [], False
    for a in argv:
        if skip or a == "--num-processes" or a.startswith("--num-processes="):
            skip = a == "--num-processes"
            continue
        rest.append(a)
    print(f"Launching {n} processes (torchrun --standalone --nproc-per-node {n} -m thinktune {' '.join(rest)}).", flush=True)
    # torch.distributed would pin each process to 1 thread: share the cores out instead.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=n, run_id=str(uuid.uuid4()), rdzv_backend="c10d",
                          rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.5)
    try:
        elastic_launch(config, sys.executable)("-m", "thinktune", *rest)
    except ChildFailedError as e:
        # The processes already printed the reason (rank 0 only); pass on its exit code, not a dump.
        codes = {f.local_rank: f.exitcode for f in e.failures.values()}
        return codes.get(0, next(iter(codes.values()), 1)) or 1
    return 0


def cmd_plan(args) -> int:
    from .plan import GiB, dims_from, fit, format_plan

    cfg = config_mod.load(args.config, [])
    if args.memory <= 0 or (args.max_length is not None and args.max_length < 64) or (args.batch_size is not None and args.batch_size < 1):
        raise UserError("--memory must be positive, --max-length at least 64 and --batch-size at least 1.")
    result = fit(
        dims_from(args.model or cfg.model.name), int(args.memory * GiB), args.device,
        seq_lens=(args.max_length,) if args.max_length else (4096, 2048, 1024, 512),
        methods=(args.method,) if args.method else ("lora", "qlora"), batches=(args.batch_size,) if args.batch_size else (4, 2, 1),
        lora_r=cfg.lora.r, lora_targets=tuple(cfg.lora.target_modules), lora_dropout=cfg.lora.dropout, head_on_labels=cfg.train.head_on_labels,
    )
    print(format_plan(result))
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

    if args.questions < 1 or args.max_new_tokens < 1:
        raise UserError("--questions and --max-new-tokens must be at least 1.")

    cfg = config_mod.load(args.config, list(args.set) + ([f"train.output_dir={json.dumps(args.out)}"] if args.out else []))
    run_demo(cfg, n_questions=args.questions, max_new_tokens=args.max_new_tokens)
    return 0


def _eval_model(args) -> str:
    from .export import base_model_for

    return base_model_for(args.model, args.adapter)


def _decoding(args):
    from .evaluate.generate import Decoding

    if args.batch_size < 1 or args.max_new_tokens < 1:
        raise UserError("--batch-size and --max-new-tokens must be at least 1.")

    return Decoding(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p, batch_size=args.batch_size, seed=args.seed or 0)


def cmd_eval(args) -> int:
    from .atomic import write_json, write_jsonl
    from .evaluate.run import heldout_file_loss, load_for_eval, run_bench

    model_name = _eval_model(args)
    if args.samples > 1 and args.temperature <= 0:
        raise UserError("--samples K needs sampling: add --temperature 0.6 --top-p 0.95 (greedy gives K identical runs).")
    model, tokenizer = load_for_eval(model_name, args.adapter)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.loss:
        result = {"model": model_name, "adapter": args.adapter, **heldout_file_loss(model, tokenizer, args.loss)}
        write_json(out / "summary.json", result)
        print(f"Held-out loss of {args.loss}: {result['loss']:.4f} per token (perplexity {result['perplexity']:.2f}) over {result['tokens']:,} tokens of {result['rows']} rows; {result['rows_dropped']} rows dropped as too long.")
        return 0
    preds, summary = run_bench(model, tokenizer, args.bench, _decoding(args), samples=args.samples, limit=args.limit, seed=args.seed, ask_answer_line=args.answer_line)
    summary.update(model=model_name, adapter=args.adapter)
    write_jsonl(out / "predictions.jsonl", preds)
    write_json(out / "summary.json", summary)
    lo, hi = summary["accuracy_ci95"]
    print(f"{args.bench}: accuracy {summary['accuracy']:.1%} ({summary['correct']}/{summary['items']}, 95% interval {lo:.1%}-{hi:.1%}); "
          f"unparsed {summary['unparsed_rate']:.1%}; closed </think> {summary['closed_think_rate']:.1%}; stopped on eos {summary['eos_rate']:.1%}; "
          f"{summary['generation_tokens_per_second']} tokens/s. Written: {out / 'predictions.jsonl'}, {out / 'summary.json'}.")
    return 0


def cmd_compare(args) -> int:
    from .evaluate.compare import compare
    from .evaluate.report import paired_sentence

    if not args.adapter:
        raise UserError("thinktune compare needs --adapter RUN_DIR (the fine-tune to compare with its base).")
    out = Path(args.out)
    s = compare(_eval_model(args), args.adapter, args.bench, out, _decoding(args), questions=args.questions, limit=args.limit, seed=args.seed, ask_answer_line=args.answer_line)
    print(f"{args.bench}: base {s['base']['accuracy']:.1%} -> fine-tuned {s['tuned']['accuracy']:.1%}. {paired_sentence(s)}\nReport: {out / 'report.html'} and {out / 'report.md'}.")
    return 0


def cmd_generate(args) -> int:
    from .atomic import write_jsonl
    from .evaluate.run import generate_file, load_for_eval

    dec = _decoding(args)
    model, tokenizer = load_for_eval(_eval_model(args), args.adapter)
    rows, speed = generate_file(model, tokenizer, args.input, dec)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out, rows)
    closed = sum(r["closed_think"] for r in rows)
    print(f"Generated {len(rows)} rows ({speed['tokens_per_second']} tokens/s); {closed} closed </think>, {sum(r['stop'] == 'eos' for r in rows)} stopped on eos. Written: {out}.")
    return 0


def cmd_merge(args) -> int:
    from .export import merge

    out = merge(Path(args.run_dir), Path(args.out), args.dtype, args.overwrite)
    print(f"Merged model written to {out} ({args.dtype}); it loads with AutoModelForCausalLM.from_pretrained('{out}') alone.")
    return 0


def cmd_export(args) -> int:
    from .export import export_gguf

    out = Path(args.out)
    if out.suffix != ".gguf":
        raise UserError(f"--out {out}: the file name should end in .gguf.")
    out.parent.mkdir(parents=True, exist_ok=True)
    export_gguf(Path(args.source), out, args.type)
    print(f"Wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, {args.type}) and {out.parent / 'Modelfile'}; "
          f"run it with: ollama create mymodel -f {out.parent / 'Modelfile'} && ollama run mymodel")
    return 0


def _chat(args) -> int:
    from .chat import cmd_chat

    return cmd_chat(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not sys.stderr.isatty():
        # Off a terminal (CI logs, pipes, files) a progress bar's redraws pile up on one line;
        # the hub's switch also silences transformers' "Loading weights" bar (issue 11).
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # PEFT 0.21 calls a transformers API deprecated in 5.x on every LoRA wrap: noise for users.
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    handler = {"train": cmd_train, "plan": cmd_plan, "demo": cmd_demo, "data": cmd_data_check, "eval": cmd_eval, "compare": cmd_compare, "generate": cmd_generate, "merge": cmd_merge, "export": cmd_export, "chat": _chat}[args.command]
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun, one process speaks for all
    try:
        code = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at interpreter exit
        return code
    except UserError as e:
        from .trainer import TrainingDiverged

        diverged = isinstance(e, TrainingDiverged)
        if main_process:
            print(f"{chr(10) if diverged else ''}thinktune: error: {e}", file=sys.stderr)  # diverged: after a progress bar
        return 3 if diverged else 2
    except BrokenPipeError:
        # `thinktune plan | head`: the reader left; stop quietly as a shell tool does (issue 11).
        # stdout is pointed at /dev/null so Python's flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, the status of a tool killed by a closed pipe
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS):
            raise
        if main_process:
            print(f"thinktune: error: cannot write {e.filename or 'the output'}: {e.strerror}. Nothing half-written was published; "
                  "free some space or choose a writable --out, then run again (with --resume if a checkpoint was saved).", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("thinktune: interrupted; nothing was written to the run folder.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
