"""The Trainer as thinktune runs it: held-out loss measured, recorded and announced, and a loss
curve redrawn as the run goes (the whole loop runs in test_sft, test_init and test_resilience)."""

import json
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerCallback

from conftest import tiny_model
from thinktune import config
from thinktune.data import Collator
from thinktune.events import HeldOut
from thinktune.run import Run, read_metrics
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
    # held-out rows cut to nothing labelled are not measured: 0/0 read as a loss of 0.0 (issue 13)
    blank = HeldoutEval(run, [{**r, "labels": [-100] * len(r["labels"])} for r in rows], Collator(r1_tokenizer.pad_token_id), every=2, batch_size=1)
    before = list(run.records)
    blank.measure(model, SimpleNamespace(global_step=4, epoch=0.0, max_steps=4))
    assert run.records == before
    records = [json.loads(x) for x in (run.work / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 2] and records == run.records
    assert events == [HeldOut(r["step"], 4, r["eval_loss"]) for r in records] and records[0]["eval_loss"] > 10  # random model, 152k vocabulary


class StopAt(TrainerCallback):
    """Test-only Ctrl-C as optimizer step `step` begins (after the checkpoints before it are sealed)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, args, state, control, **kw):
        if state.global_step + 1 == self.step:
            raise KeyboardInterrupt


def test_resume_applies_a_changed_learning_rate(tmp_path, tiny_qwen2_dir, short_sample, one_thread):
    """Issue 13: --resume with train.lr changed said so and recorded it, and then trained with the
    checkpoint's rate. Now the schedule goes on from where it was, at the new rate."""
    import shutil

    from safetensors.torch import load_file

    from thinktune.sft import train

    sets = [f"model.name={tiny_qwen2_dir}", "model.precision=fp32", f"data.path={short_sample}", "data.limit=14", "data.max_length=80"]
    sets += ["data.overflow=truncate", "data.val_min_rows=2", "data.val_fraction=0.01", "train.batch_size=3", "train.grad_accum=1"]
    sets += ["train.epochs=1", "train.logging_steps=1", "train.eval_steps=100", "train.save_steps=2", "train.lr=1e-2", "lora.dropout=0"]

    def cfg(name, *more):
        return config.load(None, [*sets, f"train.output_dir={tmp_path / name}", *more])

    with pytest.raises(KeyboardInterrupt, match="checkpoint-2, is kept"):
        train(cfg("a"), callbacks=[StopAt(3)])
    shutil.copytree(tmp_path / ".a.partial", tmp_path / ".same.partial")
    (tmp_path / ".same.partial" / "config.yaml").write_text(config.dump(cfg("same")))
    events = []
    changed = train(cfg("a", "train.lr=1e-3"), resume=True, on_event=events.append).summary
    same = train(cfg("same"), resume=True).summary
    assert changed["resumed_from_step"] == same["resumed_from_step"] == 2
    steps = changed["optimizer_steps"]  # 4: 10 training rows (2 of 14 cut inside their prompt) in batches of 3; linear decay to 0
    lrs = {r["step"]: r["lr"] for r in read_metrics(tmp_path / "a" / "metrics.jsonl") if "lr" in r}
    # the rate a step trained with (logged by transformers 5) is base x (steps - done) / steps
    assert lrs[2] == pytest.approx(1e-2 * (steps - 1) / steps, rel=1e-12)  # before the interruption: the old rate
    assert lrs[3] == pytest.approx(1e-3 * (steps - 2) / steps, rel=1e-12)  # after: the new rate, same place in the schedule
    assert {r["step"]: r["lr"] for r in read_metrics(tmp_path / "same" / "metrics.jsonl") if "lr" in r}[3] == pytest.approx(1e-2 * (steps - 2) / steps)
    warned = [e.text for e in events if getattr(e, "level", "") == "warning"]
    assert any(w.startswith("resuming with train.lr changed from 0.01 to 0.001: applied from the next step on") for w in warned)
    a, b = load_file(tmp_path / "a" / "adapter_model.safetensors"), load_file(tmp_path / "same" / "adapter_model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) > 1e-6  # the new rate changed the weights


def test_resume_refuses_settings_that_reorder_the_rows(tmp_path):
    from thinktune import checkpoints
    from thinktune.errors import UserError

    cfg = config.load(None, values={"train.output_dir": str(tmp_path / "r")})
    with pytest.raises(KeyboardInterrupt), Run(cfg, "sft") as run:
        (run.checkpoints / "checkpoint-2").mkdir()
        checkpoints.seal(run.checkpoints / "checkpoint-2", {"step": 2, "tokens_seen": 1})
        raise KeyboardInterrupt
    for key, value in (("train.batch_size", 4), ("train.grad_accum", 8), ("train.seed", 1), ("train.group_by_length", False)):
        changed = config.load(None, values={"train.output_dir": str(tmp_path / "r"), key: value})
        with pytest.raises(UserError, match=rf"{key} was .*decide which rows each step trains on"):
            Run(changed, "sft", resume=True).__enter__()


def strict_json(line: str):
    """json.loads that refuses Python's NaN / Infinity tokens (not JSON)."""
    return json.loads(line, parse_constant=lambda token: pytest.fail(f"non-standard JSON token {token}"))


class WreckAt(TrainerCallback):
    """Test-only fault (issue 12: no fault hook in production code) at optimizer step `step`: the
    weights whose name holds `part` are multiplied by `factor`, as the step begins (its loss sees
    them) or right after its update (only the weights, and a checkpoint of them, would)."""

    def __init__(self, step: int, part: str, factor: float, when: str):
        self.step, self.part, self.factor = step, part, factor
        setattr(self, when, self.wreck)

    def wreck(self, args, state, control, model=None, **kw):
        if state.global_step + 1 == self.step:  # both events come before the step is counted
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if self.part in name:
                        p.mul_(self.factor)


@pytest.mark.parametrize(
    "fault,what",
    [
        # finite but wrecked, as lr=1e6 did (loss 2.6 -> 16.6); a tiny random model's own weights cannot get there
        (WreckAt(4, "lm_head", 1e4, "on_step_begin"), "the loss became"),
        (WreckAt(4, "lora_A", float("inf"), "on_optimizer_step"), "the update made adapter weights non-finite"),  # as lr=inf did
    ],
)
def test_a_diverging_run_publishes_nothing_and_keeps_only_good_checkpoints(tmp_path, tiny_qwen2_dir, short_sample, one_thread, fault, what):
    """Issue 13: lr=inf published an all-NaN adapter with exit 0; lr=1e6 named as good a checkpoint
    whose weights then gave a wrecked loss. A diverged run stops before saving such weights, keeps
    only checkpoints whose weights gave a sane loss, writes standard JSON, and its advice works."""
    from safetensors.torch import load_file

    from thinktune import checkpoints
    from thinktune.errors import TrainingDiverged
    from thinktune.sft import train

    sets = [f"model.name={tiny_qwen2_dir}", "model.precision=fp32", f"data.path={short_sample}", "data.limit=10", "data.max_length=160"]
    sets += ["data.overflow=truncate", "data.val_min_rows=2", "data.val_fraction=0.01", "train.batch_size=1", "train.grad_accum=1"]
    sets += ["train.logging_steps=1", "train.eval_steps=2", "train.save_steps=1", "train.save_total_limit=null", f"train.output_dir={tmp_path / 'r'}"]
    with pytest.raises(TrainingDiverged) as stop:
        train(config.load(None, [*sets, "train.lr=1e-2"]), callbacks=[fault])
    message = str(stop.value)
    assert message.startswith("Training stopped at optimizer step 4: " + what) and "train.lr is 0.01" in message
    assert not (tmp_path / "r").exists()  # nothing published
    work = tmp_path / ".r.partial"
    records = [strict_json(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    kept = sorted(work.glob("checkpoints/checkpoint-*"), key=checkpoints.step_of)
    assert [checkpoints.step_of(k) for k in kept] == [1, 2, 3][: len(kept)] and kept  # nothing from step 4 on
    for folder in kept:  # every checkpoint left is one to resume from: finite weights that then gave a sane loss
        assert all(bool(t.isfinite().all()) for t in load_file(folder / "adapter_model.safetensors").values())
        assert all(r["loss"] <= 3 * records[0]["eval_loss"] for r in records if r["step"] == checkpoints.step_of(folder) + 1 and "loss" in r)
    assert f"The last good checkpoint is {kept[-1]}" in message
    summary = train(config.load(None, [*sets, "train.lr=1e-3"]), resume=True).summary  # the advice works
    assert summary["resumed_from_step"] == checkpoints.step_of(kept[-1])
    assert all(bool(t.isfinite().all()) for t in load_file(tmp_path / "r" / "adapter_model.safetensors").values())
