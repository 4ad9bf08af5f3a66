"""A thinking-budget sweep (`thinktune eval --max-thinking-tokens 128,256,512,1024`): the same
items scored at each budget, written as a table (sweep.md) and a plot (sweep.png) of accuracy
against the thinking allowed: what a reasoning fine-tune buys per token of thinking (issue 14)."""

from __future__ import annotations

import io
from pathlib import Path

from ..atomic import write_text


def sweep_row(budget: int, summary: dict) -> dict:
    """One budget's line of the sweep, from that run's summary."""
    return {
        "max_thinking_tokens": budget,
        "accuracy": summary["accuracy"],
        "accuracy_ci95": summary["accuracy_ci95"],
        "think_tokens_mean": summary["think_tokens_mean"],
        "forced_close_rate": summary["forced_close_rate"],
        "limit_rate": summary["limit_rate"],
        "unparsed_rate": summary["unparsed_rate"],
        "ambiguous_rate": summary["ambiguous_rate"],
    }


def table(rows: list[dict]) -> str:
    """The sweep as a markdown table, one line per budget."""
    lines = [
        "| thinking budget | accuracy [95% interval] | mean thinking tokens | closed by the budget | cut by the token limit | unparsed | ambiguous |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lo, hi = r["accuracy_ci95"]
        lines.append(
            f"| {r['max_thinking_tokens']} | {r['accuracy']:.1%} [{lo:.1%}, {hi:.1%}] | {r['think_tokens_mean']:.0f} | "
            f"{r['forced_close_rate']:.0%} | {r['limit_rate']:.0%} | {r['unparsed_rate']:.0%} | {r['ambiguous_rate']:.0%} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], title: str) -> bytes:
    """Accuracy (with its 95% interval) against the thinking budget, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = [r["max_thinking_tokens"] for r in rows]
    accs = [r["accuracy"] for r in rows]
    errs = [[a - r["accuracy_ci95"][0] for a, r in zip(accs, rows)], [r["accuracy_ci95"][1] - a for a, r in zip(accs, rows)]]
    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=100)
    ax.errorbar(budgets, accs, yerr=errs, marker="o", capsize=5)
    ax.set_xscale("log", base=2)
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_ylim(0, 1)
    ax.set_xlabel("thinking budget (--max-thinking-tokens)")
    ax.set_ylabel("accuracy (95% interval)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def write_sweep(out: Path, rows: list[dict], title: str) -> None:
    write_text(out / "sweep.md", f"# {title}\n\n" + table(rows))
    (out / "sweep.png").write_bytes(plot(rows, title))
