"""`thinktune compare`: base vs base + adapter on the same items, paired, with a readable report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..atomic import write_json, write_jsonl
from ..decoding import Decoding
from ..model import load_for_inference
from ..run import read_metrics
from .report import write_reports
from .run import heldout_file_rows, rows_loss, run_bench, run_heldout_rows, run_measure
from .stats import mcnemar_exact, paired_counts


def compare_models(
    model_name: str,
    adapter: str,
    bench: str,
    out: Path,
    dec: Decoding,
    questions: str | None = None,
    limit: int | None = None,
    seed: int | None = None,
    ask_answer_line: bool = False,
) -> dict:
    """Run both models, write predictions, summary.json, report.md and report.html into `out`."""
    model, tokenizer = load_for_inference(model_name, adapter)
    kw: dict[str, Any] = dict(limit=limit, seed=seed, ask_answer_line=ask_answer_line)
    # Held-out loss on --questions, else on the run's own held-out rows (rebuilt from its config).
    rows = heldout_file_rows(tokenizer, questions)[0] if questions else run_heldout_rows(adapter, tokenizer)
    source = questions or (f"held-out rows of {adapter}" if rows else None)
    precision, per_pass = run_measure(adapter)  # the run's own, so its eval_loss_start/end come out again
    with model.disable_adapter():
        base_preds, base = run_bench(model, tokenizer, bench, dec, desc="base", **kw)
        base_loss = rows_loss(model, tokenizer, rows, precision, per_pass) if rows else None
    tuned_loss = rows_loss(model, tokenizer, rows, precision, per_pass) if rows else None  # unfolded, as training measured it
    model = model.merge_and_unload()  # folded for generation: no LoRA detour per layer and step (issue 14)
    tuned_preds, tuned = run_bench(model, tokenizer, bench, dec, desc="tuned", **kw)

    paired = paired_counts([p["correct"] for p in base_preds], [p["correct"] for p in tuned_preds])
    summary = {
        "model": model_name,
        "adapter": adapter,
        "bench": bench,
        "base": base,
        "tuned": tuned,
        "paired": {**paired, "mcnemar_p": mcnemar_exact(paired["base_only"], paired["tuned_only"])},
        "heldout_loss": {"source": source, "rows": len(rows), "precision": precision, "base": base_loss, "tuned": tuned_loss} if rows else None,
    }
    write_jsonl(out / "predictions_base.jsonl", base_preds)
    write_jsonl(out / "predictions_tuned.jsonl", tuned_preds)
    write_json(out / "summary.json", summary)
    write_reports(summary, base_preds, tuned_preds, read_metrics(Path(adapter) / "metrics.jsonl"), out)
    return summary
