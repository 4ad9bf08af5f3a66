"""`thinktune eval` (evaluate/api.py) end to end on CPU with the real demo model and the real MedQA file."""

import json

import pytest

from conftest import GEN_ITEMS
from thinktune.cli import main
from thinktune.evaluate.stats import wilson_interval


def test_eval_numbers_are_consistent(base_eval):
    preds, s = base_eval
    assert len(preds) == s["items"] == GEN_ITEMS
    assert s["correct"] == sum(p["correct"] for p in preds) == sum(p["extracted"] == p["gold"] for p in preds)
    assert s["accuracy"] == s["correct"] / GEN_ITEMS
    assert s["accuracy_ci95"] == list(wilson_interval(s["correct"], GEN_ITEMS))
    assert s["unparsed_rate"] == sum(p["how"] == "unparsed" for p in preds) / GEN_ITEMS
    assert s["ambiguous_rate"] == sum(p["how"] == "ambiguous" for p in preds) / GEN_ITEMS
    assert s["unparsed_rate"] + s["ambiguous_rate"] == sum(p["extracted"] is None for p in preds) / GEN_ITEMS
    assert s["limit_rate"] == sum(p["stop"] == "max_new_tokens" for p in preds) / GEN_ITEMS == pytest.approx(1 - s["eos_rate"])
    assert all(p["gold_text"] and p["forced_close"] is None for p in preds)
    assert s["eos_rate"] == sum(p["stop"] == "eos" for p in preds) / GEN_ITEMS
    assert all(p["output_tokens"] <= 32 for p in preds)
    assert all(p["stop"] == "eos" or p["output_tokens"] == 32 for p in preds)
    assert "Please answer the following multiple-choice question:" in preds[0]["prompt"]
    assert s["decoding"]["max_new_tokens"] == 32 and s["decoding"]["temperature"] == 0.0
    assert s["generation_tokens_per_second"] > 0


def test_eval_loss_counts_the_labelled_tokens(cot_file, tmp_path, r1_tokenizer):
    from thinktune import config
    from thinktune.data import IGNORE_INDEX, prepare
    from thinktune.model import load_tokenizer, resolve

    assert main(["eval", "--model", "smollm2-demo", "--loss", str(cot_file), "--out", str(tmp_path)]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    cfg = config.load(None, [f"data.path={cot_file}", "data.val_fraction=0", "data.val_min_rows=0"])
    data = prepare(cfg.data, load_tokenizer(resolve("smollm2-demo")))
    assert s["rows"] == 4 and s["tokens"] == sum(sum(1 for x in e["labels"] if x != IGNORE_INDEX) for e in data.train)
    assert 0.5 < s["loss"] < 5


def test_evaluate_model_reports_started_and_finished_with_the_written_summary(cot_file, tmp_path):
    import thinktune
    from thinktune.events import Finished, Started

    got = []
    result = thinktune.evaluate_model("smollm2-demo", loss_file=str(cot_file), out=tmp_path, on_event=got.append)
    assert got[0] == Started("eval", str(tmp_path)) and isinstance(got[-1], Finished) and len(got) == 2
    assert got[-1].summary == result == json.loads((tmp_path / "summary.json").read_text())
    assert got[-1].text.startswith(f"Held-out loss of {cot_file}: {result['loss']:.4f} per token")


def test_samples_need_sampling(tmp_path):
    import thinktune
    from thinktune.errors import UserError
    from thinktune.events import Failed

    got = []
    with pytest.raises(UserError, match="--samples K needs sampling"):
        thinktune.evaluate_model("smollm2-demo", samples=3, out=tmp_path, on_event=got.append)
    assert isinstance(got[-1], Failed) and got[-1].exit_code == 2 and not any(tmp_path.iterdir())


def test_a_sweep_scores_the_items_at_each_budget_and_the_result_opens_with_the_limit_warning(tmp_path):
    import thinktune
    from thinktune.events import Finished

    events = []
    out = tmp_path / "sweep"
    dec = thinktune.Decoding(max_new_tokens=12, temperature=0.0, top_p=1.0, batch_size=4)
    s = thinktune.evaluate_model("smollm2-demo", None, "medqa", out, dec, limit=3, sweep=[8, 2], on_event=events.append)
    assert [r["max_thinking_tokens"] for r in s["sweep"]] == [2, 8]
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["max_thinking_tokens"] for p in preds] == [2, 2, 2, 8, 8, 8]
    assert s["decoding"]["max_thinking_tokens"] == 8 and s["items"] == 3
    md = (out / "sweep.md").read_text()
    assert md.splitlines()[2].startswith("| thinking budget | accuracy [95% interval] |") and "\n| 2 | " in md and "\n| 8 | " in md
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    text = [e for e in events if isinstance(e, Finished)][0].text
    # 12 new tokens cut most outputs: the first thing said is that, and how to fix it
    assert s["limit_rate"] > 0.1 and text.startswith(f"WARNING: {s['limit_rate']:.0%} of the outputs") and "--max-thinking-tokens N" in text
    assert (
        text.splitlines()[1]
        == "| thinking budget | accuracy [95% interval] | mean thinking tokens | closed by the budget | cut by the token limit | unparsed | ambiguous |"
    )
