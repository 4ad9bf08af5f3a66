"""The library calls behind the tabs (ui/page.py), without a browser."""

from __future__ import annotations

import json
import shlex

import pytest

from conftest import ROOT
from thinktune import config
from thinktune.errors import UserError
from thinktune.ui import page as P
from thinktune.ui.page import Page


@pytest.fixture
def workspace(tmp_path, smoke_run):
    """A workspace whose runs/ holds the smoke run (the real demo model, 2 steps)."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "smoke").symlink_to(smoke_run[1])
    return Page(tmp_path, smoke_run[0])


def test_runs_lists_the_finished_run_with_its_summary(workspace, smoke_run):
    summary = smoke_run[2]
    [row] = P.list_runs(workspace)
    assert row["run"] == "runs/smoke" and row["state"] == "finished" and row["steps"] == summary["optimizer_steps"]
    assert row["held-out"] == f"{summary['eval_loss_start']:.4f} → {summary['eval_loss_end']:.4f}"
    got, curve, card = P.run_details(workspace, "runs/smoke")
    assert got == summary and curve.endswith("loss_curve.png") and "LoRA" in card


def test_the_expected_gguf_size_is_the_exported_files_within_two_percent(workspace, tmp_path):
    from thinktune.export import export_gguf

    expected = P.gguf_size(workspace, "runs/smoke", "q8_0")
    out = export_gguf(tmp_path / "runs" / "smoke", tmp_path / "smoke.q8_0.gguf", "q8_0")
    assert abs(out.stat().st_size - expected) / out.stat().st_size < 0.02, (out.stat().st_size, expected)


def test_the_shown_commands_give_the_same_config(tmp_path):
    cfg = config.load(ROOT / "examples" / "demo.yaml")
    page = Page(tmp_path, cfg)
    yaml_text, command = P.yaml_and_command(cfg, "configs/demo.yaml")
    file_cmd, _, set_cmd = command.splitlines()
    assert file_cmd == "thinktune train --config configs/demo.yaml"
    saved = P.save_config(page, cfg, "configs/demo.yaml")
    assert saved.read_text(encoding="utf-8") == yaml_text and config.load(saved) == cfg
    argv = shlex.split(set_cmd)
    assert argv[:2] == ["thinktune", "train"] and config.load(None, argv[3::2]) == cfg


def test_an_upload_is_kept_in_the_workspace_and_a_wrong_type_refused(tmp_path):
    page = Page(tmp_path, config.Config())
    src = tmp_path / "upload" / "mine.json"
    src.parent.mkdir()
    src.write_text(json.dumps([{"Question": "q", "Complex_CoT": "c", "Response": "r"}]), encoding="utf-8")
    assert P.keep_upload(page, str(src)) == "data/mine.json" and (tmp_path / "data" / "mine.json").read_bytes() == src.read_bytes()
    (tmp_path / "upload" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=r"Data file notes.txt: thinktune reads .json, .jsonl, .csv, .parquet files"):
        P.keep_upload(page, str(tmp_path / "upload" / "notes.txt"))


def test_the_coloured_example_counts_what_the_pipeline_labelled(tmp_path):
    cfg = config.load(ROOT / "examples" / "demo.yaml", [f"data.path={ROOT / 'examples/data/medical_o1_en_sample.json'}"])
    page = Page(tmp_path, cfg)
    prepared, tok = P.check_data(page, cfg)
    html = P.example_html(prepared, tok, 0, "en")
    ex = prepared.train[0]
    labelled = sum(x != -100 for x in ex["labels"])
    assert f"prompt, not trained: {ex['prompt_tokens']}" in html and "end token, trained: 1" in html
    thinking = ex["answer_start"] - ex["prompt_tokens"]
    assert f"thinking, trained: {thinking}" in html and f"answer, trained: {labelled - thinking - 1}" in html
    assert html.count("tt-untrained") >= ex["prompt_tokens"] // 2 and "数据" not in html
    assert "提示，不训练" in P.example_html(prepared, tok, 0, "zh")
    assert "Data:" in P.report_markdown(prepared.report, "en") and "数据检查" in P.report_markdown(prepared.report, "zh")
