"""The `thinktune` command: a thin layer of flags over the library functions."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

from . import config as config_mod
from .console import Console
from .decoding import Decoding
from .errors import Interrupted, UserError
from .events import WRITE_ERRNOS, JsonLines, Message, failure
from .flags import FLAG_SETTINGS, RL_FLAG_SETTINGS, build_parser


def _decoding(args, seed: int | None) -> Decoding:
    budget = args.max_thinking_tokens
    if isinstance(budget, list):  # eval / compare: one budget, or a sweep (see _sweep)
        budget = budget[0] if len(budget) == 1 else None
    return Decoding(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        batch_size=getattr(args, "batch_size", 1),
        seed=seed,
        max_thinking_tokens=budget,
        stop_loops=args.stop_loops,
    )


def _sweep(args) -> list[int] | None:
    """The thinking budgets of a sweep (`--max-thinking-tokens 128,256,...`), None for one or none."""
    budgets = args.max_thinking_tokens
    return budgets if isinstance(budgets, list) and len(budgets) > 1 else None


def resolve_config(args):
    """The Config of a train / data check command: --config, then --set, then the flags."""
    values = {key: getattr(args, attr) for attr, key in FLAG_SETTINGS.items() if getattr(args, attr, None) is not None}
    if getattr(args, "overwrite", False):
        values["train.overwrite"] = True
    return config_mod.load(args.config, list(args.set), values)


def cmd_train(args) -> int:
    if args.num_processes > 1 and "LOCAL_RANK" not in os.environ:
        return _launch(args.num_processes, args.argv)
    if args.num_processes < 1:
        raise UserError("--num-processes must be at least 1.")
    from .sft import train

    on_event = JsonLines() if args.events == "json" else Console()
    try:
        cfg = resolve_config(args)
    except UserError as e:
        on_event(failure(e))  # a watcher of --events json learns why, not only the exit code
        raise
    train(cfg, resume=args.resume, on_event=on_event)
    return 0


def cmd_rl(args) -> int:
    """`thinktune rl`: GRPO (rl/grpo.py); `--demo` on the offline demo model (rl/demo.py)."""
    values = {key: getattr(args, attr) for attr, key in RL_FLAG_SETTINGS.items() if getattr(args, attr, None) is not None}
    if str(values.get("rl.adapter", "")).lower() == "none":
        values["rl.adapter"] = None
    if args.overwrite:
        values["train.overwrite"] = True
    if args.demo:
        from .rl.demo import run_rl_demo

        if args.heldout < 2:
            raise UserError("--heldout must be at least 2 items.")
        run_rl_demo(config_mod.load(args.config or "examples/demo_rl.yaml", list(args.set), values), heldout=args.heldout)
        return 0
    from .rl.grpo import train_rl

    on_event = JsonLines() if args.events == "json" else Console()
    try:
        cfg = config_mod.load(args.config, list(args.set), values)
    except UserError as e:
        on_event(failure(e))
        raise
    train_rl(cfg, resume=args.resume, on_event=on_event)
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
    # stderr: stdout may be a stream of JSON events (--events json)
    print(f"Launching {n} processes (torchrun --standalone --nproc-per-node {n} -m thinktune {' '.join(rest)}).", file=sys.stderr, flush=True)
    # torch.distributed would pin each process to 1 thread: share the cores out instead.
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // n)))
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=n,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.5,
    )
    try:
        elastic_launch(config, sys.executable)("-m", "thinktune", *rest)
    except ChildFailedError as e:
        # The processes already printed the reason (rank 0 only); pass on its exit code, not a dump.
        codes = {f.local_rank: f.exitcode for f in e.failures.values()}
        return codes.get(0, next(iter(codes.values()), 1)) or 1
    return 0


def cmd_plan(args) -> int:
    from .plan_text import plan_report

    cfg = config_mod.load(args.config, [])
    print(plan_report(cfg, args.memory, args.device, args.model, args.method, args.max_length, args.batch_size, args.headroom, args.config))
    return 0


def cmd_data_check(args) -> int:
    from .data import prepare
    from .data.pipeline import report_lines
    from .model import load_tokenizer, resolve

    cfg = resolve_config(args)  # the model train would use, so the token counts are train's
    tokenizer = load_tokenizer(resolve(cfg.model.name))
    report = prepare(cfg.data, tokenizer, cfg.train.seed).report
    if args.json:
        print(json.dumps({"model": cfg.model.name, **report.to_dict()}, indent=2, ensure_ascii=False))
        return 0
    if args.rows:
        print(f"{'row':>5}  {'fate':<13}{'tokens':>7}{'prompt':>8}  note")
        for f in report.rows:
            print(f"{f.row:>5}  {f.fate:<13}{f.tokens:>7}{f.prompt_tokens:>8}  {f.note}")
        print()
    console = Console()
    console(
        Message(
            f"Model (tokenizer): {cfg.model.name}; rendering: {report.template}; lengths median {report.length_median:g}, p90 {report.length_p90}, max {report.length_max} tokens."
        )
    )
    for level, line in report_lines(report):
        console(Message(line, level))
    if not args.rows:
        console(Message("--rows lists every row's fate and length.", "note"))
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    if args.questions < 1 or args.max_new_tokens < 1:
        raise UserError("--questions and --max-new-tokens must be at least 1.")

    cfg = config_mod.load(args.config, list(args.set), {"train.output_dir": args.out} if args.out else None)
    run_demo(cfg, n_questions=args.questions, max_new_tokens=args.max_new_tokens)
    return 0


def cmd_eval(args) -> int:
    from .evaluate.api import evaluate_model

    if args.samples < 1:
        raise UserError("--samples must be at least 1.")
    evaluate_model(
        args.model,
        args.adapter,
        args.bench,
        args.out,
        _decoding(args, args.seed or 0),
        samples=args.samples,
        limit=args.limit,
        seed=args.seed,
        answer_line=args.answer_line,
        loss_file=args.loss,
        on_event=Console(),
        overwrite=args.overwrite,
        sweep=_sweep(args),
        backend=args.backend,
    )
    return 0


def cmd_compare(args) -> int:
    from .evaluate.api import compare

    compare(
        args.model,
        args.adapter,
        args.bench,
        args.out,
        _decoding(args, args.seed or 0),
        questions=args.questions,
        limit=args.limit,
        seed=args.seed,
        answer_line=args.answer_line,
        on_event=Console(),
        overwrite=args.overwrite,
        sweep=_sweep(args),
        backend=args.backend,
    )
    return 0


def cmd_generate(args) -> int:
    from .atomic import PartialRows
    from .evaluate.run import generate_file, generate_job, read_prompts
    from .model import load_for_inference
    from .outputs import claim, generated_jsonl
    from .run import base_model_for

    out = Path(args.out)
    model_name = base_model_for(args.model, args.adapter)
    claim(out, "file", args.overwrite, sources=(args.input, model_name, args.adapter), ours=generated_jsonl)  # before any work
    prompts = read_prompts(args.input)  # bad input fails before the model loads
    dec = _decoding(args, args.seed)
    partial = PartialRows(out, generate_job(model_name, args.adapter, args.input, dec))  # an interrupted run is finished by the next
    if args.backend == "vllm":
        from .evaluate.vllm_backend import load_vllm

        model, tokenizer = load_vllm(model_name, args.adapter)
    else:
        model, tokenizer = load_for_inference(model_name, args.adapter, fold=True)
    try:
        rows, speed = generate_file(model, tokenizer, args.input, dec, prompts, partial)
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted; the rows made so far are saved in {partial.path}: run the same command again to make only the rest.") from None
    partial.finish(rows)
    closed = sum(r["closed_think"] for r in rows)
    kept = f" ({speed['rows_kept']} kept from an interrupted run)" if speed["rows_kept"] else ""
    print(
        f"Generated {len(rows)} rows{kept} ({speed['tokens_per_second']} tokens/s); {closed} closed </think>, {sum(r['stop'] == 'eos' for r in rows)} stopped on eos, {sum(r['stop'] == 'loop' for r in rows)} in a loop. Written: {out}."
    )
    return 0


def cmd_merge(args) -> int:
    from .export import merge

    out = merge(Path(args.run_dir), Path(args.out), args.dtype, args.overwrite)
    print(f"Merged model written to {out} ({args.dtype}); it loads with AutoModelForCausalLM.from_pretrained('{out}') alone.")
    return 0


def cmd_export(args) -> int:
    from .export import export_gguf, modelfile_path

    out = export_gguf(Path(args.source), Path(args.out), args.type, args.overwrite)
    mf = modelfile_path(out)
    print(f"Wrote {out} ({out.stat().st_size / 2**20:.1f} MiB, {args.type}) and {mf}; run it with: ollama create mymodel -f {mf} && ollama run mymodel")
    return 0


def cmd_chat(args) -> int:
    from .chat import chat

    return chat(args.model, args.adapter, _decoding(args, args.seed), hide_thinking=args.hide_thinking, color=not args.no_color)


def cmd_ui(args) -> int:
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise UserError('thinktune ui needs Gradio: pip install "thinktune[ui]" (or make ui, which installs it into .venv).')
    from .ui.server import serve

    workspace = Path(args.workspace)
    if not workspace.is_dir():
        raise UserError(f"--workspace {workspace}: no such folder.")
    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port}: give a port in 1-65535.")
    start = config_mod.load(args.config, [])  # a bad --config fails here, in the CLI's words
    return serve(args.host, args.port, args.lang, workspace, start, args.password)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not sys.stderr.isatty():
        # Off a terminal (CI logs, pipes, files) a progress bar's redraws pile up on one line;
        # the hub's switch also silences transformers' "Loading weights" bar (issue 11).
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # PEFT 0.21 calls a transformers API deprecated in 5.x on every LoRA wrap: noise for users.
    # TRL 1.16 toggles gradient_checkpointing_disable/enable around every generation, by the same old names.
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*is deprecated.*", category=FutureWarning)
    handler = {
        "train": cmd_train,
        "rl": cmd_rl,
        "plan": cmd_plan,
        "demo": cmd_demo,
        "data": cmd_data_check,
        "eval": cmd_eval,
        "compare": cmd_compare,
        "generate": cmd_generate,
        "merge": cmd_merge,
        "export": cmd_export,
        "chat": cmd_chat,
        "ui": cmd_ui,
    }[args.command]
    main_process = os.environ.get("RANK", "0") == "0"  # under torchrun, one process speaks for all
    try:
        code = handler(args)
        sys.stdout.flush()  # a closed pipe shows here, inside the try, not at interpreter exit
        return code
    except BrokenPipeError:
        # `thinktune plan | head`: the reader left; stop quietly as a shell tool does (issue 11).
        # stdout is pointed at /dev/null so Python's flush at exit does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, the status of a tool killed by a closed pipe
    except (UserError, OSError, KeyboardInterrupt) as e:
        if isinstance(e, OSError) and e.errno not in WRITE_ERRNOS:
            raise
        failed = failure(e)  # the same message and exit code a Failed event carries
        if main_process:
            print(f"{chr(10) if failed.exit_code == 3 else ''}thinktune: error: {failed.message}", file=sys.stderr)  # diverged: after a progress bar
        return failed.exit_code


if __name__ == "__main__":
    sys.exit(main())
