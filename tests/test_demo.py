"""The demo's flow on a tiny budget: train, then base vs tuned generations from the same model."""

import json
from pathlib import Path

from thinktune import config
from thinktune.decoding import Decoding
from thinktune.demo import run_demo, think_shape
from thinktune.evaluate.generate import generate_all

ROOT = Path(__file__).resolve().parents[1]


def test_think_shape():
    assert think_shape(" <think>\nhm\n</think>\n\nA") == {"opens_think": True, "closes_think": True}
    assert think_shape("<think>\nhm") == {"opens_think": True, "closes_think": False}
    assert think_shape("A") == {"opens_think": False, "closes_think": False}


def test_demo_flow(tmp_path, capsys, short_sample):
    cfg = config.load(
        ROOT / "examples" / "demo.yaml",
        [
            f"data.path={short_sample}",
            "data.max_length=160",
            "data.overflow=truncate",
            "data.limit=6",
            "data.val_min_rows=2",
            "train.epochs=1",
            f"train.output_dir={tmp_path / 'demo'}",
            "train.eval_steps=0",
        ],
    )
    result = run_demo(cfg, n_questions=2, max_new_tokens=6)
    saved = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert saved == result and len(result["questions"]) == 2
    assert result["heldout_loss_before"] != result["heldout_loss_after"]
    out = capsys.readouterr().out
    assert "BEFORE (base model)" in out and "AFTER (fine-tuned)" in out and "Held-out loss per token" in out
    for q in result["questions"]:
        for side in ("base", "tuned"):
            g = q[side]
            assert g["stop"] in ("eos", "max_new_tokens") and g["tokens"] <= 6
            assert g["opens_think"] == g["text"].lstrip().startswith("<think>")


def test_generate_matches_unbatched_greedy(r1_tokenizer):
    """Left-padded batched generation gives each prompt the tokens it gets alone."""
    from conftest import tiny_model

    model = tiny_model("qwen2", 152064, seed=3)
    prompts = [[151646, 151644, 9707, 151645], [151646, 151644, 9707, 1879, 11, 1879, 151645]]
    dec = Decoding(max_new_tokens=5, temperature=0.0, batch_size=2)
    batched, speed = generate_all(model, r1_tokenizer, prompts, dec)
    assert speed["items_per_second"] > 0
    for p, got in zip(prompts, batched):
        alone = generate_all(model, r1_tokenizer, [p], dec)[0][0]
        assert got == alone and got["tokens"] <= 5
