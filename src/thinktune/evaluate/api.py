"""`thinktune.evaluate_model` and `thinktune.compare`: the eval stages as library calls with
progress events, the same shape as `thinktune.train`. The CLI's `eval` and `compare` call these."""

from __future__ import annotations

from pathlib import Path

from ..atomic import write_json, write_jsonl
from ..decoding import Decoding
from ..errors import UserError
from ..events import Finished, OnEvent, ignore, reporting
from ..outputs import claim, staged
from .sweep import sweep_row, write_sweep
from .sweep import table as sweep_table

# Benchmarks decode greedily unless asked: a score must not depend on a sampling seed.
BENCH_DECODING = Decoding(temperature=0.0, top_p=1.0)


def evaluate_model(
    model: str | None = None,
    adapter: str | None = None,
    bench: str = "medqa",
    out: str | Path = "runs/eval",
    decoding: Decoding = BENCH_DECODING,
    samples: int = 1,
    limit: int | None = None,
    seed: int | None = None,
    answer_line: bool = False,
    loss_file: str | None = None,
    on_event: OnEvent | None = None,
    overwrite: bool = False,
    sweep: list[int] | None = None,
    backend: str = "hf",
) -> dict:
    """Score a model (+ adapter) on a benchmark, or (loss_file) its held-out loss on a CoT file.
    Writes predictions.jsonl and summary.json into `out`; returns the summary. `limit` and `seed`
    pick the items (a seeded random `limit` of them); sampling is `decoding` (its own seed).
    `sweep`: thinking budgets to score the items at, one after the other (sweep.md, sweep.png).
    `backend`: "hf" (transformers, any device) or "vllm" (an NVIDIA GPU; vllm_backend.py).
    `out` is replaced only if an earlier thinktune command wrote it, and only with `overwrite`."""
    from ..model import load_for_inference
    from ..run import base_model_for
    from .run import heldout_file_loss
    from .vllm_backend import load_vllm

    on_event = on_event or ignore
    out = Path(out)
    with reporting(on_event, "eval", str(out)):
        model_name = base_model_for(model, adapter)
        if samples > 1 and decoding.temperature <= 0:
            raise UserError("--samples K needs sampling: add --temperature 0.6 --top-p 0.95 (greedy gives K identical runs).")
        claim(out, "evaluation", overwrite, sources=(model_name, adapter, bench, loss_file))
        if backend == "vllm":
            if loss_file:
                raise UserError("--loss measures with transformers; leave --backend at hf for it.")
            lm, tokenizer = load_vllm(model_name, adapter)
        else:
            lm, tokenizer = load_for_inference(model_name, adapter, fold=not loss_file)  # a loss is measured as training did
        if loss_file:
            result = {"model": model_name, "adapter": adapter, **heldout_file_loss(lm, tokenizer, loss_file)}
            with staged(out, "evaluation") as tmp:
                write_json(tmp / "summary.json", result)
            text = (
                f"Held-out loss of {loss_file}: {result['loss']:.4f} per token (perplexity {result['perplexity']:.2f}) over "
                f"{result['tokens']:,} tokens of {result['rows']} rows; {result['rows_dropped']} rows dropped as too long."
            )
            on_event(Finished(str(out), result, text))
            return result
        bench_args = dict(samples=samples, limit=limit, seed=seed, ask_answer_line=answer_line)
        preds, summary = _scored(lm, tokenizer, bench, decoding, bench_args, sweep)
        summary.update(model=model_name, adapter=adapter)
        with staged(out, "evaluation") as tmp:
            write_jsonl(tmp / "predictions.jsonl", preds)
            write_json(tmp / "summary.json", summary)
            if sweep:
                write_sweep(tmp, summary["sweep"], f"{bench}: {model_name}{' + ' + adapter if adapter else ''}")
        on_event(Finished(str(out), summary, eval_sentence(summary, out)))
        return summary


def _scored(lm, tokenizer, bench: str, decoding: Decoding, bench_args: dict, sweep: list[int] | None) -> tuple[list[dict], dict]:
    """One benchmark run, or one per thinking budget of a sweep: then every prediction carries its
    budget and the summary is the largest budget's, with the sweep's table beside it."""
    from .run import run_bench

    if not sweep:
        return run_bench(lm, tokenizer, bench, decoding, **bench_args)
    preds, rows, summary = [], [], {}
    for budget in sorted(sweep):
        dec = Decoding(**{**decoding.to_dict(), "max_thinking_tokens": budget})
        some, summary = run_bench(lm, tokenizer, bench, dec, desc=f"budget {budget}", **bench_args)
        preds += [{**p, "max_thinking_tokens": budget} for p in some]
        rows.append(sweep_row(budget, summary))
    summary["sweep"] = rows
    return preds, summary


def eval_sentence(summary: dict, out: Path) -> str:
    """What eval prints at the end: the token-limit warning first when it applies, then the score."""
    from .run import limit_warning

    lo, hi = summary["accuracy_ci95"]
    text = (
        f"{summary['bench']}: accuracy {summary['accuracy']:.1%} ({summary['correct']}/{summary['items']}, 95% interval {lo:.1%}-{hi:.1%}); "
        f"unparsed {summary['unparsed_rate']:.1%}; ambiguous {summary['ambiguous_rate']:.1%}; closed </think> {summary['closed_think_rate']:.1%}; "
        f"stopped on eos {summary['eos_rate']:.1%}; in a loop {summary.get('loop_rate', 0.0):.1%}; {summary['generation_tokens_per_second']} tokens/s. "
        f"Written: {out / 'predictions.jsonl'}, {out / 'summary.json'}."
    )
    if summary.get("sweep"):
        text = sweep_table(summary["sweep"]) + text + f" Sweep: {out / 'sweep.md'}, {out / 'sweep.png'}."
    warning = limit_warning(("", summary))
    return f"{warning}\n{text}" if warning else text


def compare(
    model: str | None = None,
    adapter: str | None = None,
    bench: str = "medqa",
    out: str | Path = "runs/compare",
    decoding: Decoding = BENCH_DECODING,
    questions: str | None = None,
    limit: int | None = None,
    seed: int | None = None,
    answer_line: bool = False,
    on_event: OnEvent | None = None,
    overwrite: bool = False,
    sweep: list[int] | None = None,
    backend: str = "hf",
) -> dict:
    """Base vs base + adapter on the same items (paired), with report.html and report.md in `out`
    (replaced only if an earlier thinktune command wrote it, and only with `overwrite`)."""
    from ..run import base_model_for
    from .compare import compare_models
    from .report import paired_sentence
    from .run import limit_warning

    on_event = on_event or ignore
    out = Path(out)
    with reporting(on_event, "compare", str(out)):
        if not adapter:
            raise UserError("thinktune compare needs --adapter RUN_DIR (the fine-tune to compare with its base).")
        if backend != "hf":
            raise UserError(
                "thinktune compare runs on --backend hf (it also measures held-out loss with transformers). "
                "For vLLM, run thinktune eval --backend vllm once with --adapter and once without."
            )
        if sweep:
            raise UserError(
                "thinktune compare takes one thinking budget. For accuracy against thinking budget, run thinktune eval with "
                f"--max-thinking-tokens {','.join(map(str, sweep))} once with --adapter and once without (the base model)."
            )
        base = base_model_for(model, adapter)
        claim(out, "comparison", overwrite, sources=(base, adapter, bench, questions))
        with staged(out, "comparison") as tmp:
            s = compare_models(base, adapter, bench, tmp, decoding, questions=questions, limit=limit, seed=seed, ask_answer_line=answer_line)
        text = f"{bench}: base {s['base']['accuracy']:.1%} -> fine-tuned {s['tuned']['accuracy']:.1%}. {paired_sentence(s)}\nReport: {out / 'report.html'} and {out / 'report.md'}."
        warning = limit_warning(("base", s["base"]), ("fine-tuned", s["tuned"]))
        text = f"{warning}\n{text}" if warning else text
        on_event(Finished(str(out), s, text))
        return s
