"""report.md and a self-contained report.html (plots embedded as PNG) for `thinktune compare`."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from ..atomic import write_text


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def plots(summary: dict, base_preds: list[dict], tuned_preds: list[dict], records: list[dict]) -> dict[str, bytes]:
    """PNG bytes by name: accuracy bars with intervals, think-length histogram, loss curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    fig, ax = plt.subplots(figsize=(5, 3.5))
    accs = [summary[k]["accuracy"] for k in ("base", "tuned")]
    errs = [
        [a - summary[k]["accuracy_ci95"][0] for a, k in zip(accs, ("base", "tuned"))],
        [summary[k]["accuracy_ci95"][1] - a for a, k in zip(accs, ("base", "tuned"))],
    ]
    ax.bar(["base", "fine-tuned"], accs, yerr=errs, capsize=8, color=["#999999", "#3366cc"])
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy (95% interval)")
    ax.set_title(summary["bench"])
    out["accuracy.png"] = _png(fig)

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist([[p["think_tokens"] for p in base_preds], [p["think_tokens"] for p in tuned_preds]], bins=20, label=["base", "fine-tuned"])
    ax.set_xlabel("thinking length (tokens)")
    ax.set_ylabel("outputs")
    ax.legend()
    out["think_length.png"] = _png(fig)

    if records:
        from ..plots import loss_curve

        path = io.BytesIO()
        loss_curve(records, path, title="training run of the adapter")
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


def write_reports(summary: dict, base_preds: list[dict], tuned_preds: list[dict], records: list[dict], out: Path) -> None:
    images = plots(summary, base_preds, tuned_preds, records)
    for name, data in images.items():
        (out / name).write_bytes(data)
    write_text(out / "report.md", _markdown(summary, images))
    write_text(out / "report.html", _html(summary, images))


def _markdown(summary: dict, images: dict) -> str:
    lines = [f"# {summary['model']} + {summary['adapter']} on {summary['bench']}", "", "| measure | base | fine-tuned | what it means |", "|---|---|---|---|"]
    lines += [f"| {m} | {b} | {t} | {w} |" for m, b, t, w in rows(summary)]
    lines += ["", paired_sentence(summary), ""]
    lines += [f"![{n}]({n})" for n in images]
    for s in summary["side_by_side"]:
        lines += ["", f"## Item {s['id']} (gold {s['gold']})", "", "```", s["prompt"], "```"]
        for side in ("base", "tuned"):
            g = s[side]
            lines += [f"**{side}** (extracted: {_extracted(g['extracted'])})", "", "```", f"<think>{g['think']}</think>", g["answer"], "```"]
    return "\n".join(lines) + "\n"


def _html(summary: dict, images: dict) -> str:
    e = html.escape
    table = "".join(f"<tr><td>{e(m)}</td><td>{e(b)}</td><td>{e(t)}</td><td class=w>{e(w)}</td></tr>" for m, b, t, w in rows(summary))
    imgs = "".join(f'<figure><img alt="{e(n)}" src="data:image/png;base64,{base64.b64encode(d).decode()}"></figure>' for n, d in images.items())
    sides = ""
    for s in summary["side_by_side"]:
        cols = "".join(
            f"<div><h3>{side} (extracted: {e(_extracted(s[side]['extracted']))})</h3><pre class=think>{e(s[side]['think'])}</pre><pre>{e(s[side]['answer'])}</pre></div>"
            for side in ("base", "tuned")
        )
        sides += f"<h2>Item {e(s['id'])} (gold {e(s['gold'])})</h2><pre>{e(s['prompt'])}</pre><div class=cols>{cols}</div>"
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto}td{border-bottom:1px solid #ddd;padding:4px 8px}"
        ".w{color:#555;font-size:90%}pre{white-space:pre-wrap;background:#f6f6f6;padding:6px}.think{color:#777}"
        ".cols{display:flex;gap:12px}.cols>div{flex:1}figure{display:inline-block}"
    )
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>thinktune compare</title><style>{style}</style></head><body>"
        f"<h1>{e(summary['model'])} + {e(summary['adapter'])} on {e(summary['bench'])}</h1>"
        f"<table><tr><th>measure</th><th>base</th><th>fine-tuned</th><th>what it means</th></tr>{table}</table>"
        f"<p>{e(paired_sentence(summary))}</p>{imgs}{sides}</body></html>"
    )


def _extracted(letter) -> str:
    """The extracted answer as a reader should see it: a letter, or plainly none."""
    return letter if letter else "no answer found"
