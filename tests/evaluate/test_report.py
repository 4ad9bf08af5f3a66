"""report.py: report.md and a self-contained report.html for `thinktune compare`."""

import base64
import re

import pytest

from thinktune.evaluate.report import paired_sentence, rows, write_reports

PNG = b"\x89PNG\r\n\x1a\n"


def side(acc, lo, hi, **over):
    s = {
        "items": 20,
        "correct": round(acc * 20),
        "accuracy": acc,
        "accuracy_ci95": [lo, hi],
        "unparsed_rate": 0.15,
        "ambiguous_rate": 0.05,
        "limit_rate": 0.15,
        "limit_thinking_rate": 1.0,
        "closed_think_rate": 0.9,
        "eos_rate": 0.85,
        "decoding": {"max_new_tokens": 256},
        "think_tokens_mean": 312.4,
        "think_tokens_median": 298.5,
        "answer_tokens_mean": 41.6,
        "answer_tokens_median": 40.0,
    }
    s.update(over)
    return s


def summary(**over):
    s = {
        "model": "r1-1.5b",
        "adapter": "runs/a&b",
        "bench": "medqa",
        "base": side(0.4, 0.21875, 0.6134),
        "tuned": side(
            0.55,
            0.3421,
            0.7418,
            unparsed_rate=0.05,
            ambiguous_rate=0.0,
            limit_rate=0.0,
            limit_thinking_rate=0.0,
            closed_think_rate=1.0,
            eos_rate=1.0,
            think_tokens_mean=250.0,
            think_tokens_median=251.0,
            answer_tokens_mean=12.4,
            answer_tokens_median=9.5,
        ),
        "paired": {"both_right": 6, "both_wrong": 7, "base_only": 2, "tuned_only": 5, "mcnemar_p": 0.453125},
        "heldout_loss": {"source": "held-out rows of runs/a&b", "rows": 2, "precision": "fp32", "base": {"loss": 2.345678}, "tuned": {"loss": 1.98761}},
    }
    s.update(over)
    return s


def pred(i: int, think_tokens: int, correct: bool, stop: str = "eos", **over) -> dict:
    p = {
        "id": f"q{i}",
        "prompt": "Is <b>x</b> & y > z?\nA. yes\nB. no",
        "gold": "B",
        "gold_text": "no <really>",
        "think": "if a < b then",
        "answer_text": "Answer: <B>" if correct else "Answer: <A>",
        "extracted": "B" if correct else "A",
        "how": "answer_is",
        "correct": correct,
        "stop": stop,
        "think_tokens": think_tokens,
    }
    p.update(over)
    return p


BASE = [pred(1, 10, False), pred(2, 200, True), pred(3, 350, False, "max_new_tokens", extracted=None, how="unparsed", answer_text=""), pred(4, 90, True)]
TUNED = [
    pred(1, 90, True),
    pred(2, 350, True, think="long " * 2000),
    pred(3, 200, False, extracted=None, how="ambiguous", answer_text="B or A."),
    pred(4, 10, True),
]
RECORDS = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}, {"step": 0, "eval_loss": 2.3}, {"step": 2, "eval_loss": 1.9}]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp")
    write_reports(summary(), BASE, TUNED, RECORDS, out)
    return out


def test_rows_and_paired_sentence():
    r = rows(summary())
    assert r[0][:3] == ("accuracy [95% interval]", "40.0% [21.9%, 61.3%]", "55.0% [34.2%, 74.2%]")
    assert [x[:3] for x in r[1:]] == [
        ("unparsed", "15.0%", "5.0%"),
        ("ambiguous", "5.0%", "0.0%"),
        ("cut by the token limit", "15.0%", "0.0%"),
        ("stopped repeating itself", "0.0%", "0.0%"),
        ("closed </think>", "90.0%", "100.0%"),
        ("stopped on eos", "85.0%", "100.0%"),
        ("think tokens mean / median", "312 / 298", "250 / 251"),
        ("answer tokens mean / median", "42 / 40", "12 / 10"),
        ("held-out loss", "2.3457", "1.9876"),
    ]
    assert [x[0] for x in rows(summary(heldout_loss=None))][-1] == "answer tokens mean / median"  # no loss row
    assert paired_sentence(summary()) == (
        "On the same 20 items, 5 were right only after fine-tuning and 2 only before (6 both, 7 neither). "
        "McNemar's exact test gives p = 0.453: the chance of a split at least this uneven if fine-tuning changed nothing. "
        "Below 0.05 is usually taken as a real difference."
    )


IMAGES = ["accuracy.png", "stop_reasons.png", "think_length.png", "think_vs_correct.png", "loss_curve.png"]


def test_files_written(written):
    assert sorted(p.name for p in written.iterdir()) == sorted(IMAGES + ["report.html", "report.md"])
    for name in IMAGES:
        assert (written / name).read_bytes()[:8] == PNG, name


def test_every_plot_has_a_title(monkeypatch):
    from thinktune.evaluate import report

    titles = []
    monkeypatch.setattr(report, "_png", lambda fig: titles.append(fig.axes[0].get_title()) or PNG)
    report.plots(summary(), BASE, TUNED, [])
    assert titles == ["Accuracy on medqa", "How the outputs stopped", "Thinking length", "Thinking length of right and wrong answers"]


def test_markdown_opens_with_the_limit_warning_and_lists_every_item(written):
    md = (written / "report.md").read_text(encoding="utf-8")
    lines = md.splitlines()
    assert lines[0] == "# r1-1.5b + runs/a&b on medqa"
    assert lines[2].startswith("> **WARNING: 15% of the base outputs (100% of those still thinking) stopped at the token limit (--max-new-tokens 256)")
    assert "Raise --max-new-tokens, or set a thinking budget (--max-thinking-tokens N" in lines[2]
    assert lines[4:6] == ["| measure | base | fine-tuned | what it means |", "|---|---|---|---|"]
    assert lines[6].startswith("| accuracy [95% interval] | 40.0% [21.9%, 61.3%] | 55.0% [34.2%, 74.2%] | Share of questions")
    assert "| think tokens mean / median | 312 / 298 | 250 / 251 | Length of the reasoning. |" in lines
    assert any(x.startswith("| held-out loss | 2.3457 | 1.9876 | ") for x in lines)
    assert paired_sentence(summary()) in lines
    assert [x for x in lines if x.startswith("![")] == [f"![{n}]({n})" for n in IMAGES]
    i = lines.index("| item | gold answer | base | fine-tuned |")
    assert lines[i + 2 : i + 6] == [
        "| q1 | B. no <really> | ✗ A (ended by itself) | ✓ B (ended by itself) |",
        "| q2 | B. no <really> | ✓ B (ended by itself) | ✓ B (ended by itself) |",
        "| q3 | B. no <really> | ✗ no answer found (cut by the token limit) | ✗ names several options (ended by itself) |",
        "| q4 | B. no <really> | ✓ B (ended by itself) | ✓ B (ended by itself) |",
    ]
    assert "<details><summary><b>base</b>: ✗ A (ended by itself)</summary>" in lines
    assert "characters left out here; predictions_*.jsonl has the whole output" in md  # q2's long thinking is folded
    assert "long " * 2000 not in md


def test_no_warning_when_few_outputs_hit_the_limit(tmp_path):
    quiet = summary(base=side(0.4, 0.2, 0.6, limit_rate=0.1))
    write_reports(quiet, BASE, TUNED, [], tmp_path)
    assert "WARNING" not in (tmp_path / "report.md").read_text(encoding="utf-8")
    assert "class=warning" not in (tmp_path / "report.html").read_text(encoding="utf-8")


def test_html_escapes_text_and_embeds_the_pictures(written):
    html = (written / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and html.endswith("</body></html>")
    assert "<h1>r1-1.5b + runs/a&amp;b on medqa</h1><p class=warning>WARNING: 15% of the base outputs" in html
    assert "<pre>Is &lt;b&gt;x&lt;/b&gt; &amp; y &gt; z?\nA. yes\nB. no</pre>" in html
    assert "<b>x</b>" not in html and "Answer: <A>" not in html and "no <really>" not in html
    assert "<summary>base: ✗ A (ended by itself)</summary><pre class=think>if a &lt; b then</pre><pre>Answer: &lt;A&gt;</pre>" in html
    assert (
        "<tr><td>q3</td><td>B. no &lt;really&gt;</td><td>✗ no answer found (cut by the token limit)</td><td>✗ names several options (ended by itself)</td></tr>"
        in html
    )
    assert "<tr><td>closed &lt;/think&gt;</td><td>90.0%</td><td>100.0%</td>" in html
    assert "<tr><td>held-out loss</td><td>2.3457</td><td>1.9876</td>" in html
    assert "McNemar&#x27;s exact test gives p = 0.453" in html
    # self-contained: each picture is the PNG file's bytes, inline
    found = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)">', html)
    assert [n for n, _ in found] == IMAGES
    for name, data in found:
        assert base64.b64decode(data) == (written / name).read_bytes()
    assert 'src="http' not in html and "<link" not in html


def test_without_training_records_and_held_out_loss(tmp_path):
    write_reports(summary(heldout_loss=None), BASE, TUNED, [], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(IMAGES[:-1] + ["report.html", "report.md"])
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "held-out loss" not in md and "held-out loss" not in html
    assert html.count("data:image/png;base64,") == 4 and "loss_curve.png" not in md


def test_loops_have_their_row_their_label_and_their_own_warning(tmp_path):
    looped = summary(tuned=side(0.5, 0.3, 0.7, limit_rate=0.0, loop_rate=0.25))
    tuned = TUNED[:3] + [pred(4, 10, True, "loop")]
    write_reports(looped, BASE, tuned, [], tmp_path)
    assert ("stopped repeating itself", "0.0%", "25.0%") in [x[:3] for x in rows(looped)]
    lines = (tmp_path / "report.md").read_text(encoding="utf-8").splitlines()
    assert lines[2].startswith("> **WARNING: 15% of the base outputs (100% of those still thinking) stopped at the token limit")
    assert lines[3] == "" and lines[4].startswith(
        "> **WARNING: 25% of the fine-tuned outputs wrote the same passage three times in a row and were stopped there (stop reason 'loop')"
    )
    assert "--temperature 0.6" in lines[4] and lines[6] == "| measure | base | fine-tuned | what it means |"
    assert "| q4 | B. no <really> | ✓ B (ended by itself) | ✓ B (stopped repeating itself) |" in lines
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert html.count("<p class=warning>WARNING: ") == 2
