"""thinktune eval / compare end to end on CPU with the real demo model and the real MedQA file."""

import json
from pathlib import Path

import pytest
from conftest import SHARED, missing

from thinktune.cli import main
from thinktune.evaluate.stats import mcnemar_exact, wilson_interval

ROOT = Path(__file__).resolve().parents[2]
GEN = ["--bench", "medqa", "--limit", "20", "--max-new-tokens", "32", "--batch-size", "10", "--answer-line"]


@pytest.fixture(scope="module")
def cot_file(tmp_path_factory):
    rows = json.loads((ROOT / "examples" / "data" / "medical_o1_en_sample.json").read_text())[140:144]
    p = tmp_path_factory.mktemp("cot") / "heldout.json"
    p.write_text(json.dumps(rows))
    return p


@pytest.fixture(scope="module")
def base_eval(tmp_path_factory):
    if not (SHARED / "eval" / "medqa_usmle_test.json").exists():
        missing(SHARED / "eval" / "medqa_usmle_test.json")
    out = tmp_path_factory.mktemp("eval")
    assert main(["eval", "--model", "smollm2-demo", "--out", str(out), *GEN]) == 0
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    return preds, json.loads((out / "summary.json").read_text())


def test_eval_numbers_are_consistent(base_eval):
    preds, s = base_eval
    assert len(preds) == s["items"] == 20
    assert s["correct"] == sum(p["correct"] for p in preds) == sum(p["extracted"] == p["gold"] for p in preds)
    assert s["accuracy"] == s["correct"] / 20
    assert s["accuracy_ci95"] == list(wilson_interval(s["correct"], 20))
    assert s["unparsed_rate"] == sum(p["extracted"] is None for p in preds) / 20
    assert s["eos_rate"] == sum(p["stop"] == "eos" for p in preds) / 20
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


def test_compare_against_a_two_step_adapter(smoke_run, base_eval, tmp_path):
    _, run_dir, run_summary, _, _ = smoke_run
    out = tmp_path / "cmp"
    assert main(["compare", "--adapter", str(run_dir), "--out", str(out), *GEN]) == 0
    s = json.loads((out / "summary.json").read_text())
    base = [json.loads(x) for x in (out / "predictions_base.jsonl").read_text().splitlines()]
    tuned = [json.loads(x) for x in (out / "predictions_tuned.jsonl").read_text().splitlines()]
    assert s["model"] == "smollm2-demo"  # read from the run folder's config
    # the base side is the same greedy run as `thinktune eval` of the base model
    assert [p["output"] for p in base] == [p["output"] for p in base_eval[0]]
    assert s["base"]["accuracy"] == base_eval[1]["accuracy"]
    b = sum(x["correct"] and not y["correct"] for x, y in zip(base, tuned))
    c = sum(y["correct"] and not x["correct"] for x, y in zip(base, tuned))
    assert (s["paired"]["base_only"], s["paired"]["tuned_only"]) == (b, c)
    assert s["paired"]["mcnemar_p"] == mcnemar_exact(b, c)
    assert s["tuned"]["accuracy"] == sum(p["correct"] for p in tuned) / 20
    # Without --questions: the run's own held-out rows, so the numbers are the run's own.
    loss = s["heldout_loss"]
    assert loss["source"] == f"held-out rows of {run_dir}" and loss["rows"] == 2
    assert abs(loss["base"]["loss"] - run_summary["eval_loss_start"]) < 1e-5
    assert abs(loss["tuned"]["loss"] - run_summary["eval_loss_end"]) < 1e-5
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3  # accuracy, think length, the run's loss curve
    assert 'src="http' not in html and "<link" not in html  # self-contained
    assert "McNemar" in html and "held-out loss" in html
    md = (out / "report.md").read_text()
    assert "| accuracy [95% interval] |" in md and len(s["side_by_side"]) == 3
    # an output with no answer reads as such, not as Python's None (issue 11)
    nones = [x for x in s["side_by_side"] for side in ("base", "tuned") if x[side]["extracted"] is None]
    assert "extracted: None" not in md + html and (not nones or "(extracted: no answer found)" in md)


def test_heldout_loss_is_the_models_own_loss(r1_tokenizer, shared_en):
    """The per-token mean (shifted) equals the HF model's loss on a single row."""
    import torch
    from conftest import tiny_model

    from thinktune.config import DataConfig
    from thinktune.data import Collator, prepare
    from thinktune.evaluate.loss import heldout_loss

    rows = prepare(DataConfig(path="en", limit=2, val_fraction=0.0, val_min_rows=0), r1_tokenizer, rows=shared_en).train
    model = tiny_model("qwen2", 152064)
    collate = Collator(r1_tokenizer.pad_token_id)
    with torch.no_grad():
        want = model(**collate(rows[:1])).loss.item()
    assert abs(heldout_loss(model, rows[:1], collate)["loss"] - want) < 1e-5
