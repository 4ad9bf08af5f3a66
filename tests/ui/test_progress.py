"""The Train tab's progress bar and charts (ui/progress.py)."""

from __future__ import annotations

import doctest

from thinktune.ui import progress
from thinktune.ui.jobs import JobView
from thinktune.ui.progress import charts, progress_html


def test_docstring_examples_run():
    assert doctest.testmod(progress).failed == 0


def test_the_bar_says_the_state_steps_speed_and_time_left_in_both_languages():
    v = JobView(state="running", step=30, max_steps=40, tokens_per_second=1234.0, eta_seconds=3725, first_loss_seconds=6.5)
    en, zh = progress_html(v, "en"), progress_html(v, "zh")
    assert 'style="width:75%"' in en and "running · step 30 of 40 · 1,234 tokens/s · about 1:02:05 left · first loss point 6.5 s after Start" in en
    assert "训练中 · 第 30 / 40 步" in zh and "预计还需 1:02:05" in zh
    assert 'data-state="idle"' in progress_html(None, "en")
    done = JobView(state="stopped", step=12, max_steps=40, result="interrupted; run with --resume")
    assert "about" not in progress_html(done, "en") and "--resume" in progress_html(done, "en")


def test_charts_hold_every_point_of_each_series():
    v = JobView(losses=[(1, 3.0), (5, 2.0)], heldout=[(0, 3.5), (5, 2.5)], lrs=[(1, 1e-3), (5, 5e-4)], grad_norms=[(1, 0.5)])
    loss, lr, grad = charts(v, "zh")
    assert loss.values.tolist() == [[1, 3.0, "训练损失"], [5, 2.0, "训练损失"], [0, 3.5, "留出集损失"], [5, 2.5, "留出集损失"]]
    assert lr.values.tolist() == [[1, 1e-3], [5, 5e-4]] and grad.values.tolist() == [[1, 0.5]]
    assert [len(f) for f in charts(None, "en")] == [0, 0, 0]
