"""The command line: exit codes, one-paragraph errors, no traceback, nothing half-written."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from thinktune import config
from thinktune.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "data" / "medical_o1_en_sample.json"


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "thinktune", *args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_bad_data_exits_2_with_a_paragraph_and_no_traceback(tmp_path, r1_tokenizer_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"Question": "q", "Complex_CoT": "c", "Response": "r"}\n{"Question": 3}\n')
    out = tmp_path / "run"
    for cmd in (["train", "--out", str(out)], ["data", "check"]):
        p = run_cli(*cmd, "--data", str(bad), "--model", str(r1_tokenizer_dir))
        assert p.returncode == 2, p.stderr
        assert "Traceback" not in p.stderr and p.stderr.startswith("thinktune: error:")
        assert "bad.jsonl: 1 of 2 rows cannot be used" in p.stderr and "field 'Question' not a string (e.g. int) in 1 row (row 2)" in p.stderr
        assert p.stderr.strip().count("\n") == 0  # one paragraph
    assert not out.exists() and not list(tmp_path.glob(".run.tmp-*"))


def test_missing_model_is_a_clear_error(tmp_path):
    p = run_cli("data", "check", "--data", str(SAMPLE), "--model", str(tmp_path / "nowhere"))
    assert p.returncode == 2 and "Traceback" not in p.stderr and "Could not load the tokenizer" in p.stderr


def test_a_folder_that_is_not_a_run_is_never_replaced(tmp_path, capsys):
    (tmp_path / "other-run").mkdir()
    assert main(["train", "--data", str(SAMPLE), "--out", str(tmp_path), "--model", "smollm2-demo", "--overwrite"]) == 2
    assert "holds files thinktune did not write (other-run), so it is never replaced" in capsys.readouterr().err
    assert (tmp_path / "other-run").is_dir()


def test_flags_that_look_like_numbers_stay_paths(tmp_path):
    from thinktune.cli import resolve_config

    args = build_parser().parse_args(["train", "--out", "2024-06-01", "--data", "001"])
    cfg = resolve_config(args)
    assert cfg.train.output_dir == "2024-06-01" and cfg.data.path == "001"


def test_data_check_reports_every_row(r1_tokenizer_dir, capsys):
    assert (
        main(["data", "check", "--data", str(SAMPLE), "--model", str(r1_tokenizer_dir), "--set", "data.limit=100", "--set", "data.max_length=600", "--json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    rows = report["rows"]
    assert [r["row"] for r in rows] == list(range(1, 151))
    fates = [r["fate"] for r in rows]
    assert fates.count("not selected") == 50
    assert fates.count("dropped") == report["dropped"] == report["over_length"] > 0
    assert fates.count("train") == report["train_rows"] and fates.count("val") == report["val_rows"]
    assert report["train_rows"] + report["val_rows"] + report["dropped"] == 100
    assert all(r["tokens"] > 600 for r in rows if r["fate"] == "dropped")


def test_data_check_text_lists_rows_on_request(r1_tokenizer_dir, capsys):
    assert main(["data", "check", "--data", str(SAMPLE), "--model", str(r1_tokenizer_dir), "--limit", "5", "--rows"]) == 0
    out = capsys.readouterr().out
    assert "  150  not selected" in out and "5 selected" in out
    assert main(["data", "check", "--data", str(SAMPLE), "--model", str(r1_tokenizer_dir), "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "not selected" not in out and "5 selected" in out and "Note: --rows lists every row" in out


@pytest.mark.parametrize("model", [[], ["--model", "r1-1.5b"], ["--model", "r1-7b"]])
def test_data_check_counts_with_the_tokenizer_train_would_use_offline(model, r1_tokenizer, capsys):
    """Issue 12: no --model means train's default (DeepSeek-R1-Distill-Qwen-1.5B), and it and the
    R1 aliases count with the real R1 tokenizer from the GGUF header package, without the hub."""
    from thinktune.config import DataConfig
    from thinktune.data import prepare

    assert main(["data", "check", "--data", str(SAMPLE), "--limit", "8", "--json", *model]) == 0
    report = json.loads(capsys.readouterr().out)
    want = prepare(DataConfig(path=str(SAMPLE), limit=8), r1_tokenizer).report
    assert [r["tokens"] for r in report["rows"][:8]] == [r.tokens for r in want.rows[:8]]
    assert report["template"] == "chat template" and report["model"] == (model[1] if model else config.ModelConfig().name)


def test_existing_run_is_refused(tmp_path, capsys):
    from thinktune.outputs import publish

    out = tmp_path / "run"
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "summary.json").write_text("{}")
    publish(tmp_path / "w", out, "run")  # a run folder as thinktune leaves it, with its manifest
    assert main(["train", "--data", str(SAMPLE), "--out", str(out), "--model", "smollm2-demo"]) == 2
    assert "already holds a run written by thinktune; pass --overwrite" in capsys.readouterr().err
    assert (out / "summary.json").read_text() == "{}"


def test_a_closed_pipe_ends_quietly(tmp_path):
    """`thinktune plan | head`: the reader has gone; no BrokenPipeError traceback (issue 11)."""
    p = subprocess.Popen([sys.executable, "-m", "thinktune", "plan", "--model", "r1-7b"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # before it writes a byte
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 141 and err == ""


def test_a_run_where_every_answer_is_cut_off_is_refused(tmp_path, r1_tokenizer_dir):
    """Issue 11: 6 rows cut to 256 tokens all lose their answer: exit 2, one paragraph, nothing written."""
    out = tmp_path / "run"
    p = run_cli(
        "train",
        "--model",
        str(r1_tokenizer_dir),
        "--data",
        str(SAMPLE),
        "--out",
        str(out),
        "--set",
        "data.limit=6",
        "--set",
        "data.max_length_cap=256",
        "--set",
        "data.overflow=truncate",
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr
    err = p.stderr.strip()
    assert err.startswith(f"thinktune: error: Data file {SAMPLE}: every one of the ") and "loses its whole answer when cut to max_length 256" in err
    assert err.count("\n") == 0 and "Warning: 3 of 3 training rows lose their whole answer" in p.stdout
    assert list(tmp_path.iterdir()) == []  # no run folder, no partial folder


def test_a_bad_setting_under_events_json_is_a_failed_event(capsys):
    """The web page reads --events json: a run that cannot start says why there too (issue 12)."""
    from thinktune.events import Failed, from_json

    assert main(["train", "--events", "json", "--set", "lora.rr=3"]) == 2
    out, err = capsys.readouterr()
    [event] = [from_json(line) for line in out.splitlines()]
    assert isinstance(event, Failed) and event.exit_code == 2 and "unknown setting 'lora.rr'. Did you mean 'lora.r'?" in event.message
    assert err == f"thinktune: error: {event.message}\n"


def test_unknown_command_is_an_argparse_error():
    with pytest.raises(SystemExit) as e:
        main(["nope"])
    assert e.value.code == 2


def test_rl_with_bad_items_exits_2_naming_the_file_and_row(tmp_path, r1_tokenizer_dir):
    bad = tmp_path / "items.json"
    bad.write_text(json.dumps([{"question": "2+2?", "answer": "4"}, {"question": "3+3?"}]))
    out = tmp_path / "rl"
    p = run_cli("rl", "--data", str(bad), "--model", str(r1_tokenizer_dir), "--adapter", "none", "--out", str(out), "--set", "rl.exclude=[]")
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr and p.stderr.startswith("thinktune: error:") and p.stderr.strip().count("\n") == 0
    assert "items.json: 1 row(s) cannot be used: row 2: field 'answer' is missing" in p.stderr
    assert not out.exists() and not (tmp_path / ".rl.partial").exists()


def test_rl_flags_set_stage_twos_settings(capsys):
    """--data and --adapter are rl.data and rl.adapter here (train's --data is data.path)."""
    assert main(["rl", "--events", "json", "--data", "cmb", "--adapter", "none", "--steps", "3", "--set", "rl.stepz=3"]) == 2
    assert "unknown setting 'rl.stepz'. Did you mean 'rl.steps'?" in capsys.readouterr().err
    from thinktune.cli import RL_FLAG_SETTINGS

    assert RL_FLAG_SETTINGS["data"] == "rl.data" and RL_FLAG_SETTINGS["adapter"] == "rl.adapter"
