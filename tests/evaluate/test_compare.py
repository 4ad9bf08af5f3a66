"""`thinktune compare` end to end: base vs a two-step adapter, paired, with its reports."""

import json

from conftest import GEN, GEN_ITEMS
from thinktune.cli import main
from thinktune.evaluate.stats import mcnemar_exact


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
    assert s["tuned"]["accuracy"] == sum(p["correct"] for p in tuned) / GEN_ITEMS
    # Without --questions: the run's own held-out rows, so the numbers are the run's own.
    loss = s["heldout_loss"]
    assert loss["source"] == f"held-out rows of {run_dir}" and loss["rows"] == 2
    assert abs(loss["base"]["loss"] - run_summary["eval_loss_start"]) < 1e-5
    assert abs(loss["tuned"]["loss"] - run_summary["eval_loss_end"]) < 1e-5
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5  # accuracy, stop reasons, think length (2), the run's loss curve
    assert 'src="http' not in html and "<link" not in html  # self-contained
    assert "McNemar" in html and "held-out loss" in html
    md = (out / "report.md").read_text()
    assert "| accuracy [95% interval] |" in md and md.count("<details>") == 2 * GEN_ITEMS  # every item, both sides, folded
    # an output with no answer reads as such, not as Python's None (issue 11)
    assert "None" not in md.split("## Items")[1].split("### Item")[0]
    # the first result cannot mislead (issue 14): --max-new-tokens 32 cuts most outputs, and the report says so first
    assert s["tuned"]["limit_rate"] > 0.1 and md.splitlines()[2].startswith("> **WARNING: ")
