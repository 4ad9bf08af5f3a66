"""thinktune.plan_text and `thinktune plan`: the printed plan keeps the headroom free, honours
--max-length as a hard limit, and ends with a `thinktune train` command that, parsed by the
real CLI and config, sets what the plan chose."""

from __future__ import annotations

import shlex

import pytest

from thinktune import cli
from thinktune.plan import KNOWN, GiB, fit
from thinktune.plan_text import format_plan, train_command

R1_7B = KNOWN["deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"]


def _plan(capsys, *argv: str) -> str:
    assert cli.main(["plan", *argv]) == 0
    return capsys.readouterr().out


def _rows(out: str) -> list[list[str]]:
    """The table's rows: method, batch, ckpt, length, six GiB figures, fits (and '<- plan')."""
    start = out.index("-----\n") + 6
    return [line.replace("full fine-tune", "full").split() for line in out[start:].split("\n\n")[0].splitlines()]


def _applied(command_line: str):
    """The config `thinktune train` would run with, read through the real parser and loader."""
    argv = shlex.split(command_line)
    assert argv[:2] == ["thinktune", "train"]
    return cli.resolve_config(cli.build_parser().parse_args(argv[1:]))


def test_r1_7b_on_8gb_leaves_the_headroom_and_ends_with_the_command_that_applies_it(capsys):
    out = _plan(capsys, "--model", "r1-7b")
    plan = next(r for r in _rows(out) if r[-1] == "plan")
    total, length = float(plan[9]), int(plan[3])
    assert plan[:3] == ["QLoRA", "1", "on"] and total <= 7.50  # 8 GiB less the default 0.5 kept free
    assert "budget 8.00 GiB, 0.50 GiB of it kept free (--headroom): 7.50 GiB to use" in out
    last = out.rstrip("\n").splitlines()[-1]
    cfg = _applied(last)
    assert cfg.model.name == "r1-7b" and cfg.model.device == "cuda" and cfg.model.load_in_4bit is True
    assert (cfg.train.batch_size, cfg.train.grad_accum, cfg.train.gradient_checkpointing) == (1, 8, True)  # effective batch 8 kept
    assert cfg.data.max_length_cap == length and cfg.data.max_length is None
    # Without headroom the same budget allows a longer length, so the headroom did change the plan.
    no_room = next(r for r in _rows(_plan(capsys, "--model", "r1-7b", "--headroom", "0")) if r[-1] == "plan")
    assert int(no_room[3]) > length and 7.50 < float(no_room[9]) <= 8.00


def test_max_length_is_a_hard_limit(capsys):
    out = _plan(capsys, "--model", "r1-7b", "--max-length", "1100")
    rows = _rows(out)
    assert rows and max(int(r[3]) for r in rows) == 1100
    plan = next(r for r in rows if r[-1] == "plan")
    assert _applied(out.rstrip("\n").splitlines()[-1]).data.max_length_cap == int(plan[3]) <= 1100
    # Where nothing fits at the limit, the shorter standard lengths below it are tried.
    rows = _rows(_plan(capsys, "--model", "r1-7b", "--max-length", "3000", "--batch-size", "4"))
    assert all(int(r[3]) <= 3000 for r in rows) and [r[3] for r in rows if r[-1] == "plan"] == ["512"]


def test_a_config_with_a_fixed_max_length_gets_max_length_not_the_cap(capsys, tmp_path):
    yaml = tmp_path / "c.yaml"
    yaml.write_text("model:\n  name: r1-1.5b\ndata:\n  max_length: 1500\ntrain:\n  batch_size: 4\n  grad_accum: 4\n")
    out = _plan(capsys, "--config", str(yaml))
    assert max(int(r[3]) for r in _rows(out)) <= 1500  # the config's length is the limit too
    cfg = _applied(out.rstrip("\n").splitlines()[-1])
    assert cfg.model.name == "r1-1.5b" and cfg.data.max_length <= 1500
    assert cfg.train.batch_size * cfg.train.grad_accum >= 16  # the config's effective batch kept


def test_no_command_when_nothing_fits_or_for_a_full_fine_tune():
    nothing = fit(R1_7B, budget_bytes=4 * GiB)
    assert train_command(nothing, "r1-7b", None, 8) is None
    assert "To train with this plan" not in format_plan(nothing, None)
    full = fit(KNOWN["smollm2-demo"], budget_bytes=64 * GiB, device="cpu", methods=("full",))
    assert train_command(full, "smollm2-demo", None, 8) is None
    assert "a full fine-tune is planned here for comparison only" in format_plan(full, None)


@pytest.mark.parametrize("headroom", ["-1", "8", "9", "nan"])
def test_headroom_outside_the_budget_is_refused(capsys, headroom):
    assert cli.main(["plan", "--model", "r1-7b", f"--headroom={headroom}"]) == 2
    assert "--headroom must be at least 0 and less than --memory" in capsys.readouterr().err


def test_plan_command_prints_the_plans_for_the_r1_distills(capsys):
    out = _plan(capsys, "--model", "r1-7b")
    assert "DeepSeek-R1-Distill-Qwen-7B in 7.50 GiB: QLoRA, batch 1, gradient checkpointing, max length" in out
    assert "Assumptions" in out and "weights" in out and "activations" in out and "logits" in out
    assert "DeepSeek-R1-Distill-Qwen-1.5B in 7.50 GiB: LoRA," in _plan(capsys, "--model", "r1-1.5b", "--memory", "8")
    out = _plan(capsys, "--model", "r1-7b", "--method", "lora", "--max-length", "512", "--batch-size", "1")
    assert "does not fit in 7.50 GiB even with LoRA, batch 1" in out and "thinktune train" not in out
    assert cli.main(["plan", "--model", "r1-7b", "--max-length", "10"]) == 2
