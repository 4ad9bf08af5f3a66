"""`thinktune.evaluate_model` and `thinktune.compare`: the eval stages as library calls with
progress events, the same shape as `thinktune.train`. The CLI's `eval` and `compare` call these."""

from __future__ import annotations

from pathlib import Path

from ..atomic import write_json, write_jsonl
from ..decoding import Decoding
from ..errors import UserError
from ..events import Finished, OnEvent, ignore, reporting
from ..outputs import claim, staged

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
) -> dict:
    """Score a model (+ adapter) on a benchmark, or (loss_file) its held-out loss on a CoT file.
    Writes predictions.jsonl and summary.json into `out`; returns the summary. `limit` and `seed`
    pick the items (a seeded random `limit` of them); sampling is `decoding` (its own seed).
    `out` is replaced only if an earlier thinktune command wrote it, and only with `overwrite`."""
    from ..model import load_for_inference
    from ..run import base_model_for
    from .run import heldout_file_loss, run_bench

    on_event = on_event or ignore
    out = Path(out)
    with reporting(on_event, "eval", str(out)):
        model_name = base_model_for(model, adapter)
        if samples > 1 and decoding.temperature <= 0:
            raise UserError("--samples K needs sampling: add --temperature 0.6 --top-p 0.95 (greedy gives K identical runs).")
        claim(out, "evaluation", overwrite, sources=(model_name, adapter, bench, loss_file))
        lm, tokenizer = load_for_inference(model_name, adapter)
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
        preds, summary = run_bench(lm, tokenizer, bench, decoding, samples=samples, limit=limit, seed=seed, ask_answer_line=answer_line)
        summary.update(model=model_name, adapter=adapter)
        with staged(out, "evaluation") as tmp:
            write_jsonl(tmp / "predictions.jsonl", preds)
            write_json(tmp / "summary.json", summary)
        lo, hi = summary["accuracy_ci95"]
        text = (
            f"{bench}: accuracy {summary['accuracy']:.1%} ({summary['correct']}/{summary['items']}, 95% interval {lo:.1%}-{hi:.1%}); "
            f"unparsed {summary['unparsed_rate']:.1%}; closed </think> {summary['closed_think_rate']:.1%}; stopped on eos {summary['eos_rate']:.1%}; "
            f"{summary['generation_tokens_per_second']} tokens/s. Written: {out / 'predictions.jsonl'}, {out / 'summary.json'}."
        )
        on_event(Finished(str(out), summary, text))
        return summary


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
) -> dict:
    """Base vs base + adapter on the same items (paired), with report.html and report.md in `out`
    (replaced only if an earlier thinktune command wrote it, and only with `overwrite`)."""
    from ..run import base_model_for
    from .compare import compare_models
    from .report import paired_sentence

    on_event = on_event or ignore
    out = Path(out)
    with reporting(on_event, "compare", str(out)):
        if not adapter:
            raise UserError("thinktune compare needs --adapter RUN_DIR (the fine-tune to compare with its base).")
        base = base_model_for(model, adapter)
        claim(out, "comparison", overwrite, sources=(base, adapter, bench, questions))
        with staged(out, "comparison") as tmp:
            s = compare_models(base, adapter, bench, tmp, decoding, questions=questions, limit=limit, seed=seed, ask_answer_line=answer_line)
        text = f"{bench}: base {s['base']['accuracy']:.1%} -> fine-tuned {s['tuned']['accuracy']:.1%}. {paired_sentence(s)}\nReport: {out / 'report.html'} and {out / 'report.md'}."
        on_event(Finished(str(out), s, text))
        return s
