"""End to end on CPU: the real demo model, the real Trainer, a complete run folder."""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from conftest import run_tiny
from thinktune import config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(smoke_run):
    return smoke_run


def test_run_folder_is_complete(run):
    cfg, out, summary, _, data = run
    names = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "config.yaml", "metrics.jsonl", "loss_curve.png", "summary.json", "tokenizer.json"} <= names
    # checkpoints exist to resume an unfinished run: gone from the finished folder (issue 11)
    assert "checkpoints" not in names and "README.md" in names
    assert "training_args.bin" not in names
    assert not list(out.parent.glob(".smoke.*"))
    assert config.load(out / "config.yaml") == cfg
    assert yaml.safe_load((out / "config.yaml").read_text())["lora"]["r"] == 16
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))


def test_summary_counts_agree_with_the_data(run):
    _, _, s, _, data = run
    assert s["optimizer_steps"] == 2
    assert s["data"]["train_rows"] == 4 and s["data"]["val_rows"] == 2
    over = [f for f in data.report.rows if f.fate in ("train", "val") and f.tokens > 192]
    assert (s["rows_read"], s["rows_used"], s["rows_dropped"], s["rows_truncated"]) == (150, 6, 0, len(over))
    assert s["data"]["truncated"] == len(over) > 0 and s["data"]["train_answer_lost"] == 0  # cut, answers kept
    assert s["tokens_trained"] == sum(len(e["input_ids"]) for e in data.train)
    assert max(len(e["input_ids"]) for e in data.train + data.val) == 192
    # SmolLM2-135M: 30 layers, hidden 576, q 576->576, v 576->192 (3 KV heads of 64); A is r x in, B is out x r
    assert s["trainable_parameters"] == 30 * 16 * ((576 + 576) + (576 + 192))
    assert math.isfinite(s["train_loss"]) and s["peak_memory_gb"] > 0 and s["device"] == "cpu"


def test_metrics_log_and_plot(run):
    _, out, s, _, _ = run
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if "eval_loss" in r]
    trains = [r for r in records if "loss" in r]
    assert [r["step"] for r in evals] == [0, 1, 2]
    assert [r["step"] for r in trains] == [1, 2]
    assert all(math.isfinite(r["loss"]) and r["tokens_per_second"] > 0 and "lr" in r and "grad_norm" in r for r in trains)
    assert evals[0]["eval_loss"] == s["eval_loss_start"] and evals[-1]["eval_loss"] == s["eval_loss_end"]
    png = (out / "loss_curve.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    assert matplotlib.image.imread(out / "loss_curve.png").shape[:2] == (400, 700)


def test_saved_adapter_reloads_to_the_same_logits(run):
    from peft import PeftModel

    from thinktune.model import load_model, resolve

    _, out, _, model, data = run
    model.eval()  # LoRA dropout off
    x = torch.tensor([data.val[0]["input_ids"][:64]])
    with torch.no_grad():
        want = model(input_ids=x).logits
        base = load_model(resolve("smollm2-demo"), torch.float32, "cpu")
        with model.disable_adapter():
            base_logits = model(input_ids=x).logits
        reloaded = PeftModel.from_pretrained(base, out).eval()
        got = reloaded(input_ids=x).logits
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(base_logits, want, atol=1e-4)  # training changed something


def test_the_run_folder_explains_itself(run):
    """Issue 11: README.md is a real card (no PEFT blanks), and its loading code loads this adapter."""
    cfg, out, s, model, data = run
    card = (out / "README.md").read_text()
    assert "[More Information Needed]" not in card and "library_name: peft" in card
    assert "# LoRA adapter for smollm2-demo" in card and "base_model:" not in card  # an alias, not a hub id
    assert f"{s['rows_read']} rows read, {s['rows_used']} used: 4 trained on, 2 held out" in card
    assert f"Held-out loss per token: {s['eval_loss_start']:.4f} before training, {s['eval_loss_end']:.4f} after." in card
    assert "| LoRA | r=16, alpha=32, dropout=0.05, on q_proj, v_proj |" in card and f"| precision / device | {s['precision']} / cpu |" in card
    assert f"thinktune chat --adapter {out}" in card
    from thinktune.model import load_tokenizer, resolve

    code = card.split("```python\n")[1].split("```")[0]
    scope: dict = {}
    exec(code, scope)  # the card's own snippet: transformers + PEFT, no thinktune
    x = torch.tensor([data.val[0]["input_ids"][:48]])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(scope["model"].eval()(input_ids=x).logits, model(input_ids=x).logits, atol=1e-4, rtol=1e-4)
    assert scope["tokenizer"].get_vocab() == load_tokenizer(resolve("smollm2-demo")).get_vocab()


def test_auto_precision_follows_the_cpu_switch_and_compare_repeats_the_runs_own_loss(tmp_path, tiny_qwen2_dir, short_sample, monkeypatch):
    """Issue 11: on any machine, auto's two decisions are run (THINKTUNE_CPU_BF16): bf16 autocast
    and fp32 give the same held-out loss within bf16's rounding, not bit for bit; compare's
    held-out loss, measured in the run's own precision, is the run's own eval loss in both."""
    from thinktune.evaluate.run import rows_loss, run_heldout_rows, run_measure
    from thinktune.model import CPU_BF16_SWITCH, load_for_inference

    runs = {}
    for value in ("native", "emulated"):
        monkeypatch.setenv(CPU_BF16_SWITCH, value)
        runs[value] = run_tiny(tmp_path, tiny_qwen2_dir, short_sample, value, "model.precision=auto", "train.keep_checkpoints=true")[0]
    bf16, fp32 = runs["native"], runs["emulated"]
    assert (bf16["precision"], fp32["precision"]) == ("bf16", "fp32")
    for key in ("eval_loss_start", "eval_loss_end", "train_loss"):
        assert bf16[key] == pytest.approx(fp32[key], rel=1e-2) and bf16[key] != fp32[key], key
    assert bf16["optimizer_steps"] == fp32["optimizer_steps"] == 2
    # a kept checkpoint (train.keep_checkpoints=true) stays, sealed
    assert (tmp_path / "native" / "checkpoints" / "checkpoint-2" / "thinktune_checkpoint.json").is_file()
    # the data warning (4 of 10 trained rows lose their answer at 80 tokens) is in summary.json and the card
    assert [w for w in bf16["warnings"] if "4 of 10 training rows lose their whole answer" in w]
    assert bf16["warnings"][0] in (tmp_path / "native" / "README.md").read_text()
    for value, s in runs.items():
        run_dir = str(tmp_path / value)
        model, tok = load_for_inference(str(tiny_qwen2_dir), run_dir)
        rows = run_heldout_rows(run_dir, tok)
        precision, per_pass = run_measure(run_dir)
        assert (precision, per_pass) == (s["precision"], 1) and len(rows) == 2
        with model.disable_adapter():
            assert rows_loss(model, tok, rows, precision, per_pass)["loss"] == pytest.approx(s["eval_loss_start"], abs=1e-5)
        assert rows_loss(model, tok, rows, precision, per_pass)["loss"] == pytest.approx(s["eval_loss_end"], abs=1e-5)
    # and the precision matters: measured in fp32, the bf16 run's loss is not its own
    assert abs(rows_loss(model, tok, rows, "fp32")["loss"] - rows_loss(model, tok, rows, "bf16")["loss"]) > 1e-5


def test_tensorboard_gets_the_training_and_held_out_losses_in_the_run_folder(tmp_path, tiny_qwen2_dir, short_sample):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_tiny(tmp_path, tiny_qwen2_dir, short_sample, "tb", "train.report_to=tensorboard")
    records = [json.loads(line) for line in (tmp_path / "tb" / "metrics.jsonl").read_text().splitlines()]
    events = list((tmp_path / "tb" / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1  # in the run folder, not under the deleted checkpoints
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    got = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in ("train/loss", "eval/loss")}
    assert got["train/loss"] == [(r["step"], pytest.approx(r["loss"], rel=1e-6)) for r in records if "loss" in r]
    assert got["eval/loss"] == [(r["step"], pytest.approx(r["eval_loss"], rel=1e-6)) for r in records if "eval_loss" in r]
    assert len(got["eval/loss"]) >= 2  # before training and at the end


def test_a_tracker_that_is_not_installed_or_unknown_is_refused_before_anything_is_written(tmp_path, tiny_qwen2_dir, short_sample, capsys):
    from thinktune.cli import main

    out = tmp_path / "w"
    argv = ["train", "--model", str(tiny_qwen2_dir), "--data", str(short_sample), "--out", str(out)]
    assert main([*argv, "--set", "train.report_to=tensorboard,no-such-tracker"]) == 2
    assert "train.report_to='tensorboard,no-such-tracker': give none or some of tensorboard, wandb, trackio, mlflow" in capsys.readouterr().err
    assert main([*argv, "--set", "train.report_to=mlflow"]) == 2  # not installed here
    assert "train.report_to=mlflow: mlflow is not installed; pip install mlflow, or set train.report_to=none." in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".w*"))
