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
        "closed_think_rate": 0.9,
        "eos_rate": 0.85,
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
            closed_think_rate=1.0,
            eos_rate=1.0,
            think_tokens_mean=250.0,
            think_tokens_median=251.0,
            answer_tokens_mean=12.4,
            answer_tokens_median=9.5,
        ),
        "paired": {"both_right": 6, "both_wrong": 7, "base_only": 2, "tuned_only": 5, "mcnemar_p": 0.453125},
        "heldout_loss": {"source": "held-out rows of runs/a&b", "rows": 2, "precision": "fp32", "base": {"loss": 2.345678}, "tuned": {"loss": 1.98761}},
        "side_by_side": [
            {
                "id": "q1",
                "gold": "B",
                "prompt": "Is <b>x</b> & y > z?\nA. yes\nB. no",
                "base": {"think": "if a < b then", "answer": "Answer: <A>", "extracted": "A"},
                "tuned": {"think": "so", "answer": "B & only B", "extracted": None},
            },
        ],
    }
    s.update(over)
    return s


PREDS = [{"think_tokens": t} for t in (10, 200, 350, 90)]
RECORDS = [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}, {"step": 0, "eval_loss": 2.3}, {"step": 2, "eval_loss": 1.9}]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp")
    write_reports(summary(), PREDS, PREDS[::-1], RECORDS, out)
    return out


def test_rows_and_paired_sentence():
    r = rows(summary())
    assert r[0][:3] == ("accuracy [95% interval]", "40.0% [21.9%, 61.3%]", "55.0% [34.2%, 74.2%]")
    assert [x[:3] for x in r[1:]] == [
        ("unparsed", "15.0%", "5.0%"),
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


def test_files_written(written):
    assert sorted(p.name for p in written.iterdir()) == ["accuracy.png", "loss_curve.png", "report.html", "report.md", "think_length.png"]
    for name in ("accuracy.png", "loss_curve.png", "think_length.png"):
        assert (written / name).read_bytes()[:8] == PNG, name


def test_markdown_holds_the_numbers(written):
    md = (written / "report.md").read_text(encoding="utf-8")
    lines = md.splitlines()
    assert lines[0] == "# r1-1.5b + runs/a&b on medqa"
    assert lines[2:4] == ["| measure | base | fine-tuned | what it means |", "|---|---|---|---|"]
    assert lines[4].startswith("| accuracy [95% interval] | 40.0% [21.9%, 61.3%] | 55.0% [34.2%, 74.2%] | Share of questions")
    assert "| think tokens mean / median | 312 / 298 | 250 / 251 | Length of the reasoning. |" in lines
    assert any(x.startswith("| held-out loss | 2.3457 | 1.9876 | ") for x in lines)
    assert paired_sentence(summary()) in lines
    assert [x for x in lines if x.startswith("![")] == [
        "![accuracy.png](accuracy.png)",
        "![think_length.png](think_length.png)",
        "![loss_curve.png](loss_curve.png)",
    ]
    i = lines.index("## Item q1 (gold B)")
    assert lines[i + 2 : i + 7] == ["```", "Is <b>x</b> & y > z?", "A. yes", "B. no", "```"]  # markdown keeps the text as written
    assert "**base** (extracted: A)" in lines and "**tuned** (extracted: no answer found)" in lines
    assert "<think>if a < b then</think>" in lines and "extracted: None" not in md
    assert md.endswith("```\n")


def test_html_escapes_text_and_embeds_the_pictures(written):
    html = (written / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and html.endswith("</body></html>")
    assert "<h1>r1-1.5b + runs/a&amp;b on medqa</h1>" in html
    assert "<pre>Is &lt;b&gt;x&lt;/b&gt; &amp; y &gt; z?\nA. yes\nB. no</pre>" in html
    assert "<b>x</b>" not in html and "Answer: <A>" not in html
    assert "<pre class=think>if a &lt; b then</pre><pre>Answer: &lt;A&gt;</pre>" in html
    assert "<h3>tuned (extracted: no answer found)</h3>" in html and "<pre>B &amp; only B</pre>" in html
    assert "<tr><td>closed &lt;/think&gt;</td><td>90.0%</td><td>100.0%</td>" in html
    assert "<tr><td>held-out loss</td><td>2.3457</td><td>1.9876</td>" in html
    assert "McNemar&#x27;s exact test gives p = 0.453" in html
    # self-contained: each picture is the PNG file's bytes, inline
    found = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)">', html)
    assert [n for n, _ in found] == ["accuracy.png", "think_length.png", "loss_curve.png"]
    for name, data in found:
        assert base64.b64decode(data) == (written / name).read_bytes()
    assert 'src="http' not in html and "<link" not in html


def test_without_training_records_and_held_out_loss(tmp_path):
    write_reports(summary(heldout_loss=None, side_by_side=[]), PREDS, PREDS, [], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["accuracy.png", "report.html", "report.md", "think_length.png"]
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "held-out loss" not in md and "held-out loss" not in html and "## Item" not in md
    assert html.count("data:image/png;base64,") == 2 and "loss_curve.png" not in md
