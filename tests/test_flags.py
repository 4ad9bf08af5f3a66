"""Every command's flags (flags.py): each setting explained in --help, one set of generation flags
with one set of defaults, and a command that differs says why."""

import re

import pytest

from thinktune import config
from thinktune.decoding import Decoding
from thinktune.flags import build_parser


def helptext(command: str) -> str:
    return build_parser()._subparsers._group_actions[0].choices[command].format_help()


def test_train_help_explains_every_knob():
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    rl = helptext("rl")
    for name, _, _ in config.knobs():
        assert (name in text) == (not name.startswith("rl.")), name  # stage two's settings are in rl --help
        assert (name in rl) == (not name.startswith("data.")), name  # rl reads its items from rl.data
        # every name is followed by a gap before its sentence (train.gradient_checkpointingRecompute, issue 11)
        assert re.search(rf"^  {re.escape(name)}  +\S", rl if name.startswith("rl.") else text, re.M), name
    assert "--set" in text and "--overwrite" in text


def test_generation_flags_are_one_definition_with_one_set_of_defaults():
    p, d = build_parser(), Decoding()
    for command in ("generate", "chat", "eval", "compare"):
        extra = ["--input", "x", "--out", "y"] if command == "generate" else []
        args = p.parse_args([command, *extra])
        greedy = command in ("eval", "compare")
        assert args.max_new_tokens == d.max_new_tokens == 2048, command
        assert (args.temperature, args.top_p) == ((0.0, 1.0) if greedy else (d.temperature, d.top_p)) == ((0.0, 1.0) if greedy else (0.6, 0.95)), command
        if greedy:  # the command that differs says why, in its --help
            assert "a score must not depend on a sampling seed" in re.sub(r"\s+", " ", helptext(command))
    assert p.parse_args(["chat"]).seed is None and p.parse_args(["generate", "--input", "x", "--out", "y"]).seed == 0
    assert "--batch-size" not in helptext("chat")  # chat answers one message at a time


def test_loops_are_stopped_unless_asked_not_to():
    from thinktune.cli import _decoding

    p = build_parser()
    for command in ("generate", "chat", "eval", "compare"):
        extra = ["--input", "x", "--out", "y"] if command == "generate" else []
        assert _decoding(p.parse_args([command, *extra]), 0).stop_loops is True, command
        assert _decoding(p.parse_args([command, *extra, "--no-stop-loops"]), 0).stop_loops is False, command
        assert "three times in a row" in re.sub(r"\s+", " ", helptext(command)), command


@pytest.mark.parametrize("command", ["train", "data"])
def test_train_and_data_check_take_the_same_model_and_data_flags(command):
    argv = [command] + (["check"] if command == "data" else []) + ["--model", "r1-7b", "--data", "x.json", "--limit", "5"]
    args = build_parser().parse_args(argv)
    assert (args.model, args.data, args.limit) == ("r1-7b", "x.json", 5)


def test_thinking_budget_takes_one_number_or_a_sweep_where_a_sweep_is_scored():
    from thinktune.cli import _decoding, _sweep

    p = build_parser()
    one = p.parse_args(["eval", "--max-thinking-tokens", "256"])
    assert (_decoding(one, 0).max_thinking_tokens, _sweep(one)) == (256, None)
    many = p.parse_args(["eval", "--max-thinking-tokens", "128,256,512,1024"])
    assert (_decoding(many, 0).max_thinking_tokens, _sweep(many)) == (None, [128, 256, 512, 1024])
    assert _decoding(p.parse_args(["compare"]), 0).max_thinking_tokens is None
    assert p.parse_args(["generate", "--input", "x", "--out", "y", "--max-thinking-tokens", "64"]).max_thinking_tokens == 64
    for bad in ("12,x", "-1", "64,-2"):
        with pytest.raises(SystemExit) as e:
            p.parse_args(["eval", "--max-thinking-tokens", bad])
        assert e.value.code == 2
