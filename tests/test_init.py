"""The Python API (thinktune/__init__.py): the README's example runs as written, events arrive in
order and agree with the run folder, and a run through the API equals one through the CLI."""

import json
import re
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

import thinktune
from conftest import ROOT
from thinktune import events as ev
from thinktune.errors import UserError


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_and_prints_what_the_run_measured(tmp_path, monkeypatch, capsys):
    from thinktune.model import CPU_BF16_SWITCH

    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(ROOT / "examples")  # the example's relative paths, as from a checkout
    # auto picks fp32 here on every machine: the API is under test, not bf16 (test_sft runs both), and a
    # suite forced to act as bf16 (THINKTUNE_CPU_BF16=native) on a CPU that only emulates it stays fast
    monkeypatch.setenv(CPU_BF16_SWITCH, "emulated")
    code = readme_example()
    assert len(code.strip().splitlines()) <= 12
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    out = capsys.readouterr().out.splitlines()
    summary = json.loads((tmp_path / "runs" / "api-demo" / "summary.json").read_text())
    assert scope["result"].summary == summary and scope["result"].run_dir == Path("runs/api-demo")
    steps = [line for line in out if line.startswith("step ")]
    records = [json.loads(x) for x in (tmp_path / "runs" / "api-demo" / "metrics.jsonl").read_text().splitlines()]
    assert [int(line.split()[1].split("/")[0]) for line in steps] == [r["step"] for r in records if "loss" in r] != []
    held = [line for line in out if line.startswith("held-out loss")]
    assert held[0] == f"held-out loss after 0 steps: {summary['eval_loss_start']:.3f}"
    assert held[-1].endswith(f"{summary['eval_loss_end']:.3f}")


def sets(tiny_qwen2_dir, short_sample, out) -> list[str]:
    return [
        "--model",
        str(tiny_qwen2_dir),
        "--data",
        str(short_sample),
        "--out",
        str(out),
        "--set",
        "model.precision=fp32",
        "--set",
        "data.limit=14",  # 2 are cut inside their prompt at 80 tokens and dropped: 10 train, 2 held out
        "--set",
        "data.max_length=80",
        "--set",
        "data.overflow=truncate",
        "--set",
        "data.val_min_rows=2",
        "--set",
        "train.batch_size=2",
        "--set",
        "train.grad_accum=2",
        "--set",
        "train.epochs=1",
        "--set",
        "train.logging_steps=1",
        "--set",
        "train.eval_steps=2",
        "--set",
        "train.save_steps=2",
        "--set",
        "lora.dropout=0",
    ]


def test_api_and_cli_runs_give_identical_adapters_and_the_same_events(tmp_path, tiny_qwen2_dir, short_sample):
    from thinktune.cli import build_parser, resolve_config

    cli_out, api_out = tmp_path / "cli", tmp_path / "api"
    p = subprocess.run(
        [sys.executable, "-m", "thinktune", "train", *sets(tiny_qwen2_dir, short_sample, cli_out), "--events", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    cli_events = [ev.from_json(line) for line in p.stdout.splitlines()]  # stdout holds nothing but events

    got: list = []
    result = thinktune.train(resolve_config(build_parser().parse_args(["train", *sets(tiny_qwen2_dir, short_sample, api_out)])), on_event=got.append)
    a, b = load_file(cli_out / "adapter_model.safetensors"), load_file(api_out / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)  # bit for bit
    assert (cli_out / "metrics.jsonl").read_text().count("\n") == (api_out / "metrics.jsonl").read_text().count("\n")

    def shape(events):  # what is not timing or a path
        return [
            (type(e).__name__, getattr(e, "step", None), getattr(e, "loss", None) if not isinstance(e, ev.Step) else e.loss is not None)
            for e in events
            if not isinstance(e, ev.Message)
        ]

    assert shape(cli_events) == shape(got)
    kinds = [type(e) for e in got]
    assert kinds[0] is ev.Started and kinds[-1] is ev.Finished and ev.Failed not in kinds
    assert [e.step for e in got if isinstance(e, ev.Step)] == list(range(1, result.summary["optimizer_steps"] + 1))
    assert [e.step for e in got if isinstance(e, ev.CheckpointSaved)] == [2, 3] == [2, result.summary["optimizer_steps"]]  # 10 rows, 4 per update
    records = [json.loads(x) for x in (api_out / "metrics.jsonl").read_text().splitlines()]
    assert [(e.step, e.loss) for e in got if isinstance(e, ev.HeldOut)] == [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    assert [(e.step, e.loss) for e in got if isinstance(e, ev.Step) and e.loss is not None] == [(r["step"], r["loss"]) for r in records if "loss" in r]
    assert got[-1].summary == result.summary == json.loads((api_out / "summary.json").read_text())
    assert any(isinstance(e, ev.Message) and e.text.startswith("Data: 150 rows read") and "14 selected" in e.text for e in got)


def test_a_failed_run_reports_failed_with_the_cli_message_and_exit_code(tmp_path, tiny_qwen2_dir, short_sample):
    from thinktune.cli import build_parser, resolve_config

    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    got: list = []
    cfg = resolve_config(build_parser().parse_args(["train", *sets(tiny_qwen2_dir, short_sample, out)]))
    try:
        thinktune.train(cfg, on_event=got.append)
    except UserError as e:
        message = str(e)
    assert got == [ev.Failed(message, 2)] and "holds files thinktune did not write (notes.txt)" in message
    assert (out / "notes.txt").read_text() == "mine"
