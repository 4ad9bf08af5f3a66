"""report.md and a self-contained report.html (plots embedded as PNG) for `thinktune compare`."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from ..atomic import write_text
from ..decoding import STOPS


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


SIDES = (("base", "base"), ("tuned", "fine-tuned"))  # summary key, what a reader sees


def plots(summary: dict, base_preds: list[dict], tuned_preds: list[dict], records: list[dict]) -> dict[str, bytes]:
    """PNG bytes by name, each with a title: accuracy with intervals, stop reasons, thinking length
    (all, and by right / wrong answer), and the adapter's loss curves when its run logged them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    preds = {"base": base_preds, "tuned": tuned_preds}
    labels = [label for _, label in SIDES]
    out = {}
    fig, ax = plt.subplots(figsize=(5, 3.5))
    accs = [summary[k]["accuracy"] for k, _ in SIDES]
    errs = [[a - summary[k]["accuracy_ci95"][0] for a, (k, _) in zip(accs, SIDES)], [summary[k]["accuracy_ci95"][1] - a for a, (k, _) in zip(accs, SIDES)]]
    ax.bar(labels, accs, yerr=errs, capsize=8, color=["#999999", "#3366cc"])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95% interval)")
    ax.set_title(f"Accuracy on {summary['bench']}")
    out["accuracy.png"] = _png(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    bottom = [0.0, 0.0]
    for (stop, label), color in zip(STOPS.items(), ("#4a9a4a", "#e69900", "#cc3333")):
        shares = [sum(p["stop"] == stop for p in preds[k]) / max(1, len(preds[k])) for k, _ in SIDES]
        ax.bar(labels, shares, bottom=bottom, label=label, color=color)
        bottom = [b + x for b, x in zip(bottom, shares)]
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of outputs")
    ax.set_title("How the outputs stopped")
    ax.legend()
    out["stop_reasons.png"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist([[p["think_tokens"] for p in preds[k]] for k, _ in SIDES], bins=20, label=labels)
    ax.set_xlabel("thinking length (tokens)")
    ax.set_ylabel("outputs")
    ax.set_title("Thinking length")
    ax.legend()
    out["think_length.png"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    groups = [[p["think_tokens"] for p in preds[k] if p["correct"] == right] for k, _ in SIDES for right in (True, False)]
    ax.boxplot([g or [0] for g in groups], showmeans=True)
    ax.set_xticks(
        range(1, 5),
        [f"{label}\n{'right' if right else 'wrong'} ({len(g)})" for (_, label), right, g in zip([s for s in SIDES for _ in (0, 1)], (True, False) * 2, groups)],
    )
    ax.set_ylabel("thinking length (tokens)")
    ax.set_title("Thinking length of right and wrong answers")
    out["think_vs_correct.png"] = _png(fig)

    if records:
        from ..plots import loss_curve

        path = io.BytesIO()
        loss_curve(records, path, title="Training run of the adapter")
        out["loss_curve.png"] = path.getvalue()
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def rows(summary: dict) -> list[tuple[str, str, str, str]]:
    """(measure, base, fine-tuned, what it means) for both reports."""
    b, t = summary["base"], summary["tuned"]
    ci = lambda s: f"{_pct(s['accuracy'])} [{_pct(s['accuracy_ci95'][0])}, {_pct(s['accuracy_ci95'][1])}]"  # noqa: E731
    out = [
        ("accuracy [95% interval]", ci(b), ci(t), "Share of questions answered correctly; the true rate is in the bracket with 95% confidence."),
        ("unparsed", _pct(b["unparsed_rate"]), _pct(t["unparsed_rate"]), "Outputs with no readable answer; they count as wrong."),
        (
            "ambiguous",
            _pct(b.get("ambiguous_rate", 0.0)),
            _pct(t.get("ambiguous_rate", 0.0)),
            "Outputs whose answer names two or more options; they count as wrong.",
        ),
        (
            "cut by the token limit",
            _pct(b.get("limit_rate", 0.0)),
            _pct(t.get("limit_rate", 0.0)),
            "Outputs stopped at --max-new-tokens before they ended; one cut off before its answer counts as wrong.",
        ),
        (
            "stopped repeating itself",
            _pct(b.get("loop_rate", 0.0)),
            _pct(t.get("loop_rate", 0.0)),
            "Outputs stopped because they wrote the same passage three times in a row (--no-stop-loops lets them run on).",
        ),
        ("closed </think>", _pct(b["closed_think_rate"]), _pct(t["closed_think_rate"]), "Outputs that finished their thinking section."),
        ("stopped on eos", _pct(b["eos_rate"]), _pct(t["eos_rate"]), "Outputs that ended by themselves before the token limit."),
        (
            "think tokens mean / median",
            f"{b['think_tokens_mean']:.0f} / {b['think_tokens_median']:.0f}",
            f"{t['think_tokens_mean']:.0f} / {t['think_tokens_median']:.0f}",
            "Length of the reasoning.",
        ),
        (
            "answer tokens mean / median",
            f"{b['answer_tokens_mean']:.0f} / {b['answer_tokens_median']:.0f}",
            f"{t['answer_tokens_mean']:.0f} / {t['answer_tokens_median']:.0f}",
            "Length of the text after the reasoning.",
        ),
    ]
    loss = summary.get("heldout_loss")
    if loss:
        out.append(
            (
                "held-out loss",
                f"{loss['base']['loss']:.4f}",
                f"{loss['tuned']['loss']:.4f}",
                "Mean per-token loss on the reasoning and answers of held-out rows; lower means the model finds them more likely.",
            )
        )
    return out


def paired_sentence(summary: dict) -> str:
    p = summary["paired"]
    return (
        f"On the same {summary['base']['items']} items, {p['tuned_only']} were right only after fine-tuning and "
        f"{p['base_only']} only before ({p['both_right']} both, {p['both_wrong']} neither). McNemar's exact test "
        f"gives p = {p['mcnemar_p']:.3g}: the chance of a split at least this uneven if fine-tuning changed nothing. "
        "Below 0.05 is usually taken as a real difference."
    )


FOLD_CHARS = 4000  # an output longer than this shows its start and end in the report; predictions_*.jsonl keep it whole


def write_reports(summary: dict, base_preds: list[dict], tuned_preds: list[dict], records: list[dict], out: Path) -> None:
    from .run import limit_warning

    images = plots(summary, base_preds, tuned_preds, records)
    for name, data in images.items():
        (out / name).write_bytes(data)
    warning = limit_warning(("base", summary["base"]), ("fine-tuned", summary["tuned"]))
    items = list(zip(base_preds, tuned_preds))
    write_text(out / "report.md", _markdown(summary, images, warning, items))
    write_text(out / "report.html", _html(summary, images, warning, items))


def _mark(p: dict) -> str:
    """One side of one item: ✓ or ✗, what was read as its answer, and why the output stopped."""
    answer = p["extracted"] or ("names several options" if p["how"] == "ambiguous" else "no answer found")
    return f"{'✓' if p['correct'] else '✗'} {answer} ({STOPS[p['stop']]})"


def _fold(text: str) -> str:
    if len(text) <= FOLD_CHARS:
        return text
    half = FOLD_CHARS // 2
    return f"{text[:half]}\n[... {len(text) - FOLD_CHARS} characters left out here; predictions_*.jsonl has the whole output ...]\n{text[-half:]}"


def _markdown(summary: dict, images: dict, warning: str | None, items: list[tuple[dict, dict]]) -> str:
    lines = [f"# {summary['model']} + {summary['adapter']} on {summary['bench']}", ""]
    if warning:
        lines += [line for w in warning.split("\n\n") for line in (f"> **{w}**", "")]
    lines += ["| measure | base | fine-tuned | what it means |", "|---|---|---|---|"]
    lines += [f"| {m} | {b} | {t} | {w} |" for m, b, t, w in rows(summary)]
    lines += ["", paired_sentence(summary), ""]
    lines += [f"![{n}]({n})" for n in images]
    if items:
        lines += ["", "## Items", "", "| item | gold answer | base | fine-tuned |", "|---|---|---|---|"]
        lines += [f"| {b['id']} | {b['gold']}. {_cell(b.get('gold_text', ''))} | {_mark(b)} | {_mark(t)} |" for b, t in items]
    for b, t in items:
        lines += ["", f"### Item {b['id']} (gold {b['gold']}. {b.get('gold_text', '')})", "", "```", b["prompt"], "```"]
        for label, p in (("base", b), ("fine-tuned", t)):
            lines += [
                f"<details><summary><b>{label}</b>: {_mark(p)}</summary>",
                "",
                "```",
                f"<think>{_fold(p['think'])}</think>",
                _fold(p["answer_text"]),
                "```",
                "</details>",
            ]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Text inside a markdown table cell: one line, no column breaks."""
    return " ".join(text.split()).replace("|", "\\|")


def _html(summary: dict, images: dict, warning: str | None, items: list[tuple[dict, dict]]) -> str:
    e = html.escape
    table = "".join(f"<tr><td>{e(m)}</td><td>{e(b)}</td><td>{e(t)}</td><td class=w>{e(w)}</td></tr>" for m, b, t, w in rows(summary))
    imgs = "".join(f'<figure><img alt="{e(n)}" src="data:image/png;base64,{base64.b64encode(d).decode()}"></figure>' for n, d in images.items())
    listing = "".join(
        f"<tr><td>{e(b['id'])}</td><td>{e(b['gold'])}. {e(b.get('gold_text', ''))}</td><td>{e(_mark(b))}</td><td>{e(_mark(t))}</td></tr>" for b, t in items
    )
    sides = ""
    for b, t in items:
        cols = "".join(
            f"<div><details><summary>{label}: {e(_mark(p))}</summary><pre class=think>{e(_fold(p['think']))}</pre><pre>{e(_fold(p['answer_text']))}</pre></details></div>"
            for label, p in (("base", b), ("fine-tuned", t))
        )
        sides += f"<h3>Item {e(b['id'])} (gold {e(b['gold'])}. {e(b.get('gold_text', ''))})</h3><pre>{e(b['prompt'])}</pre><div class=cols>{cols}</div>"
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto}td{border-bottom:1px solid #ddd;padding:4px 8px}"
        ".w{color:#555;font-size:90%}pre{white-space:pre-wrap;background:#f6f6f6;padding:6px}.think{color:#777}"
        ".cols{display:flex;gap:12px}.cols>div{flex:1}figure{display:inline-block}"
        ".warning{border:2px solid #cc3333;background:#fff0f0;padding:8px;font-weight:bold}"
    )
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>thinktune compare</title><style>{style}</style></head><body>"
        f"<h1>{e(summary['model'])} + {e(summary['adapter'])} on {e(summary['bench'])}</h1>"
        + "".join(f"<p class=warning>{e(w)}</p>" for w in (warning or "").split("\n\n") if w)
        + f"<table><tr><th>measure</th><th>base</th><th>fine-tuned</th><th>what it means</th></tr>{table}</table>"
        f"<p>{e(paired_sentence(summary))}</p>{imgs}"
        + (f"<h2>Items</h2><table><tr><th>item</th><th>gold answer</th><th>base</th><th>fine-tuned</th></tr>{listing}</table>{sides}" if items else "")
        + "</body></html>"
    )
