"""End to end on CPU: the real demo model, the real Trainer, a complete run folder."""

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from thinktune import config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(smoke_run):
    return smoke_run


def test_run_folder_is_complete(run):
    cfg, out, summary, _, data = run
    names = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "config.yaml", "metrics.jsonl", "loss_curve.png", "summary.json", "tokenizer.json"} <= names
    # the Trainer also checkpoints the last step; it is sealed like any other (issue 6)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-2"]
    assert (out / "checkpoints" / "checkpoint-2" / "thinktune_checkpoint.json").is_file()
    assert "training_args.bin" not in names
    assert not list(out.parent.glob(".smoke.*"))
    assert config.load(out / "config.yaml") == cfg
    assert yaml.safe_load((out / "config.yaml").read_text())["lora"]["r"] == 16
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(summary))


def test_summary_counts_agree_with_the_data(run):
    _, _, s, _, data = run
    assert s["optimizer_steps"] == 2
    assert s["data"]["train_rows"] == 4 and s["data"]["val_rows"] == 2
    assert (s["rows_read"], s["rows_used"], s["rows_dropped"], s["rows_truncated"]) == (150, 6, 0, 6)
    assert s["data"]["truncated"] == 6  # every row of the sample is longer than 192 tokens
    assert s["tokens_trained"] == sum(len(e["input_ids"]) for e in data.train) == 4 * 192
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
