"""The READMEs' real-GPU walkthrough (issue 15), in English and Chinese: every `thinktune` line
parses with the real CLI; `plan` runs and its last line is the train command the walkthrough
gives; that command stops where the GPU is needed, with the clear error, writing nothing."""

from __future__ import annotations

import shlex

import pytest

from conftest import ROOT
from thinktune import cli

READMES = ["README.md", "README.zh-CN.md"]


def walkthrough(name: str) -> list[list[str]]:
    """The argv of each `thinktune` line in the block after <!-- walkthrough -->."""
    text = (ROOT / name).read_text(encoding="utf-8")
    block = text.split("<!-- walkthrough -->", 1)[1].split("```", 2)[1]
    return [shlex.split(line, comments=True)[1:] for line in block.splitlines() if line.startswith("thinktune ")]


def test_both_readmes_link_each_other_and_carry_the_same_commands():
    assert "[中文](README.zh-CN.md)" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "[English](README.md)" in (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    en, zh = walkthrough("README.md"), walkthrough("README.zh-CN.md")
    assert len(en) == len(zh) >= 7
    # the same steps; the Chinese one trains and measures the Chinese recipe on the Chinese benchmark
    assert [a[:2] for a in en] == [a[:2] for a in zh]
    assert ["data", "check", "--config", "examples/medical_r1_zh.yaml"] in zh and ["--bench", "cmb"] == zh[-2][3:5]


@pytest.mark.parametrize("name", READMES)
def test_every_walkthrough_command_parses(name):
    parser = cli.build_parser()
    for argv in walkthrough(name):
        args = parser.parse_args(argv)
        if args.command == "train":
            cli.resolve_config(args)  # every --set names a real setting with a valid value


@pytest.mark.parametrize("name", READMES)
def test_the_plan_prints_the_train_command_and_that_stops_at_the_gpu(name, capsys, tmp_path, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("on a CUDA machine the walkthrough's training would start")
    monkeypatch.chdir(tmp_path)
    commands = walkthrough(name)
    i = commands.index(["plan", "--model", "r1-7b"])
    assert cli.main(commands[i]) == 0
    last = capsys.readouterr().out.rstrip("\n").splitlines()[-1]
    train = commands[i + 1]
    assert shlex.split(last)[1:] == train[: len(shlex.split(last)) - 1]  # the walkthrough only adds --out
    assert cli.main(train) == 2
    err = capsys.readouterr().err
    assert "model.device=cuda was asked for, but no CUDA device is available here" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # no run folder, no partial one
