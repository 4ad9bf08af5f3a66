"""The console a person reads: one line per logged step, the held-out loss on its step's line,
no raw dicts, no bar redraws in a log (issue 11), built from progress events (issue 12)."""

import doctest
import json
import re
import subprocess
import sys

from thinktune import console
from thinktune.console import Console
from thinktune.events import Finished, HeldOut, Message, Step

LINE = re.compile(
    r"^step (\d+)/(\d+)(?:  epoch [\d.]+  loss ([\d.]+))?(?:  held-out ([\d.]+)(?: \(before training\))?)?"
    r"(?:  lr [\d.e+-]+)?(?:  \d+ tok/s)?(?:  ETA \w+)?$"
)


def test_docstring_examples_run():
    result = doctest.testmod(console)
    assert result.attempted > 0 and result.failed == 0


def test_heldout_loss_waits_for_its_steps_line_and_is_printed_alone_otherwise(capsys):
    c = Console()
    # the Trainer's order: a step's held-out loss is measured before the step is logged; the last
    # measurement (at the end of training) comes after its step's line
    for e in [
        Message("Data: 4 rows."),
        HeldOut(0, 4, 2.5),
        Step(1, 4, 0.3, loss=2.4),
        HeldOut(2, 4, 2.3),
        Step(2, 4, 0.6),
        HeldOut(3, 4, 2.1),
        Step(3, 4, 0.8, loss=2.2, lr=1e-4),
        Message("careful", "warning"),
        Step(4, 4, 1.0, loss=2.0),
        HeldOut(4, 4, 1.9),
        Finished("run", {}, "Done."),
    ]:
        c(e)
    assert capsys.readouterr().out.splitlines() == [
        "Data: 4 rows.",
        "step 0/4  held-out 2.5000 (before training)",
        "step 1/4  epoch 0.30  loss 2.4000",
        "step 2/4  held-out 2.3000",  # step 2 was not logged: its held-out loss has a line of its own
        "step 3/4  epoch 0.80  loss 2.2000  held-out 2.1000  lr 1.00e-04",
        "Warning: careful",
        "step 4/4  epoch 1.00  loss 2.0000",
        "step 4/4  held-out 1.9000",
        "",
        "Done.",
    ]


def test_the_console_shows_one_clean_line_per_logged_step(tmp_path, tiny_qwen2_dir, short_sample):
    out = tmp_path / "run"
    sets = [
        "model.precision=fp32",
        "data.limit=14",
        "data.max_length=80",
        "data.overflow=truncate",
        "data.val_min_rows=2",
        "train.batch_size=3",
        "train.grad_accum=2",
        "train.epochs=2",
        "train.logging_steps=1",
        "train.eval_steps=3",
        "lora.dropout=0",
    ]
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
