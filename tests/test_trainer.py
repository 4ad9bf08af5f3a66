"""The Trainer as thinktune runs it: a console a person can read (one line per logged step, the
held-out loss on its step's line, no raw dicts) and a loss curve redrawn as the run goes."""

import doctest
import json
import re
import subprocess
import sys
from types import SimpleNamespace

from conftest import tiny_model

from thinktune import trainer
from thinktune.data import Collator
from thinktune.plots import loss_curve
from thinktune.trainer import HeldoutEval, MetricsLog

LINE = re.compile(
    r"^step (\d+)/(\d+)(?:  epoch [\d.]+  loss ([\d.]+))?(?:  held-out ([\d.]+)(?: \(before training\))?)?"
    r"(?:  lr [\d.e+-]+)?(?:  \d+ tok/s)?(?:  ETA \w+)?$"
)


def test_docstring_examples_run():
    result = doctest.testmod(trainer)
    assert result.attempted > 0 and result.failed == 0


def test_the_console_shows_one_clean_line_per_logged_step(tmp_path, tiny_qwen2_dir, short_sample):
    out = tmp_path / "run"
    sets = ["model.precision=fp32", "data.limit=14", "data.max_length=80", "data.overflow=truncate", "data.val_min_rows=2",
            "train.batch_size=3", "train.grad_accum=2", "train.epochs=2", "train.logging_steps=1", "train.eval_steps=3", "lora.dropout=0"]
    cmd = [sys.executable, "-m", "thinktune", "train", "--model", str(tiny_qwen2_dir), "--data", str(short_sample), "--out", str(out)]
    p = subprocess.run(cmd + [x for s in sets for x in ("--set", s)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "{'" not in p.stdout + p.stderr and "\r" not in p.stdout + p.stderr  # no raw dicts, no bar redraws in a log
    steps = [line for line in p.stdout.splitlines() if line.startswith("step ")]
    assert steps and all(LINE.match(line) for line in steps), steps
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4] and [r["step"] for r in records if "eval_loss" in r] == [0, 3, 4]
    shown = [LINE.match(line).groups() for line in steps]
    # every record is on the console once, with the value metrics.jsonl holds; step 3's held-out
    # loss shares its step's line
    assert [(int(s), float(loss)) for s, _, loss, _ in shown if loss] == [(r["step"], round(r["loss"], 4)) for r in records if "loss" in r]
    assert [(int(s), float(h)) for s, _, _, h in shown if h] == [(r["step"], round(r["eval_loss"], 4)) for r in records if "eval_loss" in r]
    assert any(loss and h for _, _, loss, h in shown) and steps[0] == f"step 0/4  held-out {records[0]['eval_loss']:.4f} (before training)"
    assert "ETA" in steps[1] and all(total == "4" for _, total, _, _ in shown)


def test_the_loss_curve_is_redrawn_at_each_heldout_measurement(tmp_path, r1_tokenizer, shared_en):
    from thinktune.config import DataConfig
    from thinktune.data import prepare

    rows = prepare(DataConfig(path="en", limit=3, val_fraction=0.0, val_min_rows=0), r1_tokenizer, rows=shared_en).train
    log = MetricsLog(tmp_path / "metrics.jsonl")
    png = tmp_path / "loss_curve.png"
    drawn = []

    def plot(records):
        loss_curve(records, png)
        drawn.append([r["step"] for r in records if "eval_loss" in r])

    ev = HeldoutEval(rows, Collator(r1_tokenizer.pad_token_id), every=2, batch_size=1, log=log, plot=plot)
    model = tiny_model("qwen2", 152064)
    for step in (0, 0, 2):  # the second call at step 0 measures nothing new
        ev.measure(model, SimpleNamespace(global_step=step, epoch=0.0))
    assert drawn == [[0], [0, 2]] and png.read_bytes()[:4] == b"\x89PNG"
