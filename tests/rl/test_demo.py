"""The RL demo's measurement: each held-out output scored by the training rewards, the rates with
their Wilson intervals, and the table that says whether before and after part."""

import pytest

from thinktune import config
from thinktune.evaluate.bench import Item
from thinktune.evaluate.stats import wilson_interval
from thinktune.rl.demo import score_output, summarize, table

ITEM = Item("1", "Which valve?", {"A": "Aortic", "B": "Mitral"}, "B")
RL = config.load(None, ["rl.max_completion_length=100", "rl.overlong_buffer=20"]).rl


def out(text: str, stop: str = "eos", tokens: int = 30) -> dict:
    return {"text": text, "stop": stop, "tokens": tokens}


def test_an_output_is_scored_as_training_scores_it():
    right = score_output(ITEM, "<|im_start|>assistant\n", out("<think>\nmitral\n</think>\n\nThe answer is B."), RL)
    assert right["rewards"] == {"correctness": 1.0, "format": 1.0, "stated": 1.0, "length": 0.0} and right["format_ok"]
    assert right["reward"] == pytest.approx(RL.correctness_weight + RL.format_weight + RL.stated_weight)
    cut = score_output(ITEM, "<|im_start|>assistant\n", out("<think>\nstill", "max_new_tokens", 100), RL)
    assert cut["rewards"] == {"correctness": 0.0, "format": 0.0, "stated": 0.0, "length": -1.0} and not cut["format_ok"]
    # the R1 template opened <think> in the prompt; the end token counts as in training (89 + 1 = 90: half the buffer)
    opened = score_output(ITEM, "<｜Assistant｜><think>\n", out("x\n</think>\n\nThe answer is A.", tokens=89), RL)
    assert opened["rewards"] == {"correctness": 0.0, "format": 1.0, "stated": 1.0, "length": -0.5}


def test_rates_carry_wilson_intervals_and_the_table_says_whether_they_part():
    good = [{"reward": 1.7, "rewards": {"correctness": 1.0, "stated": 1.0}, "format_ok": True, "stop": "eos"}] * 30
    bad = [{"reward": -1.0, "rewards": {"correctness": 0.0, "stated": 0.0}, "format_ok": False, "stop": "max_new_tokens"}] * 30
    before, after = summarize(bad[:25] + good[:5]), summarize(good[:25] + bad[:5])
    assert before["format"]["count"] == 5 and before["format"]["ci95"] == list(wilson_interval(5, 30))
    assert after["unparsed"]["rate"] == pytest.approx(5 / 30) and after["cut"]["count"] == 5
    lines = table(before, after, 30).splitlines()
    row = next(line for line in lines if line.startswith("format rate"))
    assert row.endswith("yes") and "16.7%" in row and "83.3%" in row
    same = table(before, before, 30)
    assert all(line.endswith("no") for line in same.splitlines()[3:])
