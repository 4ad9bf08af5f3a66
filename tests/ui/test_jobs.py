"""The page's runs (ui/jobs.py): a run started from the page writes the run folder the shell
command it shows writes; Stop is a clean stop with a sealed checkpoint, and Resume continues to
the adapter of an uninterrupted run; a second Start into a running folder is refused."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from thinktune import checkpoints
from thinktune import config as config_mod
from thinktune.errors import UserError
from thinktune.ui.form import values_of
from thinktune.ui.jobs import Job, Jobs, train_argv
from thinktune.ui.page import Page, start_run


def settings(tiny_qwen2_dir, short_sample, epochs=3) -> list[str]:
    # fp32 on every machine: the equalities below are properties of the maths, not of bf16 rounding
    return [
        f"model.name={tiny_qwen2_dir}",
        "model.precision=fp32",
        f"data.path={short_sample}",
        "data.limit=40",
        "data.max_length=192",  # every row keeps labels: a batch of rows cut inside their prompt would be a 0/0 loss
        "data.overflow=truncate",
        "train.batch_size=2",
        "train.grad_accum=1",
        f"train.epochs={epochs}",
        "train.logging_steps=1",
        "train.eval_steps=10",
        "train.save_steps=50",
        "train.lr=1e-2",
        "lora.dropout=0",
        "train.output_dir=runs/tiny",
    ]


def finish(job: Job, timeout: float = 600) -> int:
    code = job.wait(timeout)
    deadline = time.time() + 10
    while job.snapshot().state in ("starting", "running", "stopping") and time.time() < deadline:
        time.sleep(0.05)  # the reader thread sets the final state once the process is gone
    return code


def records(folder: Path) -> list[dict]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "tokens_per_second"} for r in rows]


@pytest.fixture(scope="module")
def shell_run(tmp_path_factory, tiny_qwen2_dir, short_sample):
    """The reference: the settings as a YAML file, run by `thinktune train --config` in a shell."""
    work = tmp_path_factory.mktemp("shell")
    (work / "configs").mkdir()
    (work / "configs" / "tiny.yaml").write_text(config_mod.dump(config_mod.load(None, settings(tiny_qwen2_dir, short_sample))), encoding="utf-8")
    p = subprocess.run([sys.executable, "-m", "thinktune", *train_argv("configs/tiny.yaml")[1:]], cwd=work, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return work / "runs" / "tiny"


def test_a_page_run_writes_the_run_folder_of_the_shell_command_it_shows(tmp_path, shell_run, tiny_qwen2_dir, short_sample):
    page = Page(tmp_path, config_mod.load(None, settings(tiny_qwen2_dir, short_sample)))
    job = start_run(page, values_of(page.start))
    assert job.command == ["thinktune", "train", "--config", "configs/tiny.yaml"]
    assert finish(job) == 0
    view = job.snapshot()
    ours = tmp_path / "runs" / "tiny"
    a, b = load_file(ours / "adapter_model.safetensors"), load_file(shell_run / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)  # bit for bit
    assert (ours / "config.yaml").read_text() == (shell_run / "config.yaml").read_text()
    assert records(ours) == records(shell_run)
    assert sorted(p.name for p in ours.iterdir()) == sorted(p.name for p in shell_run.iterdir())
    # What the page showed is what the run logged.
    logged = [r for r in records(ours) if "loss" in r]
    assert view.state == "finished" and [s for s, _ in view.losses] == [r["step"] for r in logged]
    assert [v for _, v in view.losses] == [r["loss"] for r in logged]
    assert [v for _, v in view.heldout] == [r["eval_loss"] for r in records(ours) if "eval_loss" in r]
    assert view.step == view.max_steps == json.loads((ours / "summary.json").read_text())["optimizer_steps"]
    assert view.first_loss_seconds is not None and "Done in" in view.result


def test_stop_seals_a_checkpoint_and_resume_reaches_the_uninterrupted_adapter(tmp_path, shell_run, tiny_qwen2_dir, short_sample):
    page = Page(tmp_path, config_mod.load(None, settings(tiny_qwen2_dir, short_sample)))
    job = start_run(page, values_of(page.start))
    while job.snapshot().step < 5:
        assert job.alive, job.snapshot().lines[-5:]
        time.sleep(0.02)
    with pytest.raises(UserError, match="already going"):
        start_run(page, values_of(page.start))  # two runs into one folder
    job.stop()
    assert finish(job) == 130
    view = job.snapshot()
    assert view.state == "stopped" and "--resume" in view.result
    ck = tmp_path / "runs" / ".tiny.partial" / "checkpoints"
    sealed = [checkpoints.step_of(p) for p in ck.glob("checkpoint-*") if (p / checkpoints.SEAL).is_file()]
    assert sealed == [view.step] and 5 <= view.step < view.max_steps  # saved at the step it stopped after
    assert not (tmp_path / "runs" / "tiny").exists()  # nothing published
    again = start_run(page, values_of(page.start), resume=True)
    assert again.command[-1] == "--resume" and finish(again) == 0
    summary = json.loads((tmp_path / "runs" / "tiny" / "summary.json").read_text())
    assert summary["resumed_from_step"] == view.step
    a, b = load_file(tmp_path / "runs" / "tiny" / "adapter_model.safetensors"), load_file(shell_run / "adapter_model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    assert records(tmp_path / "runs" / "tiny") == records(shell_run)


def test_a_run_that_cannot_start_says_why(tmp_path):
    jobs = Jobs(tmp_path)
    (tmp_path / "bad.yaml").write_text("lora:\n  rr: 3\n", encoding="utf-8")
    job = jobs.start(Path("bad.yaml"), Path("runs/x"))
    assert finish(job) == 2
    view = job.snapshot()
    assert view.state == "failed" and "unknown setting 'lora.rr'. Did you mean 'lora.r'?" in view.result
