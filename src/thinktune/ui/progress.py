"""The Train tab's progress bar and charts, drawn from a run's JobView (jobs.py).

>>> from thinktune.ui.jobs import JobView
>>> v = JobView(state="running", step=3, max_steps=12, tokens_per_second=250.0, eta_seconds=75, losses=[(1, 2.5), (2, 2.25)], heldout=[(0, 2.75)])
>>> progress_html(v, "en").count('style="width:25%"')
1
>>> loss, lr, grad = charts(v, "en")
>>> loss.to_dict("records")
[{'step': 1, 'value': 2.5, 'series': 'training loss'}, {'step': 2, 'value': 2.25, 'series': 'training loss'}, {'step': 0, 'value': 2.75, 'series': 'held-out loss'}]
"""

from __future__ import annotations

import html

import pandas as pd

from .jobs import JobView
from .text import tr


def progress_html(view: JobView | None, lang: str) -> str:
    if view is None:
        return f'<div id="tt-status" data-state="idle">{html.escape(tr(lang, "no_run"))}</div>'
    share = round(100 * view.step / view.max_steps) if view.max_steps else 0
    parts = [tr(lang, "state_" + view.state), tr(lang, "steps").format(view.step, view.max_steps or "?")]
    if view.tokens_per_second:
        parts.append(f"{view.tokens_per_second:,.0f} tokens/s")
    if view.eta_seconds is not None and view.state == "running":
        parts.append(tr(lang, "eta").format(_clock(view.eta_seconds)))
    if view.first_loss_seconds is not None:
        parts.append(tr(lang, "first_loss").format(view.first_loss_seconds))
    result = f'<p id="tt-result">{html.escape(view.result)}</p>' if view.result else ""
    return (
        f'<div id="tt-status" data-state="{view.state}" data-step="{view.step}" data-max-steps="{view.max_steps}">'
        f'<div class="tt-bar"><div style="width:{share}%"></div></div><p>{html.escape(" · ".join(parts))}</p>{result}</div>'
    )


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def charts(view: JobView | None, lang: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Loss (training and held-out, one chart), learning rate, gradient norm."""

    def frame(points, series=None):
        rows = [{"step": s, "value": v, **({"series": series} if series else {})} for s, v in points]
        return pd.DataFrame(rows, columns=["step", "value", *(["series"] if series else [])])

    if view is None:
        return frame([], "-"), frame([]), frame([])
    loss = pd.concat([frame(view.losses, tr(lang, "training_loss")), frame(view.heldout, tr(lang, "heldout_loss"))], ignore_index=True)
    return loss, frame(view.lrs), frame(view.grad_norms)
