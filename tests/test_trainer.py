"""The Trainer as thinktune runs it: held-out loss measured, recorded and announced, and a loss
curve redrawn as the run goes (the whole loop runs in test_sft, test_init and test_resilience)."""

import json
from types import SimpleNamespace

from conftest import tiny_model
from thinktune import config
from thinktune.data import Collator
from thinktune.events import HeldOut
from thinktune.run import Run
from thinktune.trainer import HeldoutEval


def test_the_loss_curve_is_redrawn_at_each_heldout_measurement(tmp_path, r1_tokenizer, shared_en):
    from thinktune.config import DataConfig
    from thinktune.data import prepare

    rows = prepare(DataConfig(path="en", limit=3, val_fraction=0.0, val_min_rows=0), r1_tokenizer, rows=shared_en).train
    events = []
    run = Run(config.load(None, values={"train.output_dir": str(tmp_path / "run")}), "sft", on_event=events.append)
    run.work.mkdir()
    png = run.work / "loss_curve.png"
    ev = HeldoutEval(run, rows, Collator(r1_tokenizer.pad_token_id), every=2, batch_size=1)
    model = tiny_model("qwen2", 152064)
    drawn = []
    for step in (0, 0, 2):  # the second call at step 0 measures nothing new
        ev.measure(model, SimpleNamespace(global_step=step, epoch=0.0, max_steps=4))
        drawn.append(png.stat().st_mtime_ns if png.exists() else None)
    assert drawn[0] is not None and drawn[1] == drawn[0] and drawn[2] > drawn[1] and png.read_bytes()[:4] == b"\x89PNG"
    records = [json.loads(x) for x in (run.work / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 2] and records == run.records
    assert events == [HeldOut(r["step"], 4, r["eval_loss"]) for r in records] and records[0]["eval_loss"] > 10  # random model, 152k vocabulary
