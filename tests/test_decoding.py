"""decoding.py: the one definition of generation settings, its defaults and its range checks."""

import dataclasses
import math

import pytest

from thinktune.decoding import Decoding
from thinktune.errors import UserError


def test_defaults_are_deepseeks_advice_for_r1():
    d = Decoding()
    assert (d.temperature, d.top_p) == (0.6, 0.95)
    assert d.to_dict() == {
        "max_new_tokens": 2048,
        "temperature": 0.6,
        "top_p": 0.95,
        "repetition_penalty": 1.0,
        "batch_size": 32,
        "seed": 0,
        "max_thinking_tokens": None,
        "stop_loops": True,
    }


def test_to_dict_round_trips():
    d = Decoding(max_new_tokens=5, temperature=0.0, top_p=1.0, repetition_penalty=1.1, batch_size=3, seed=None, max_thinking_tokens=0, stop_loops=False)
    want = {
        "max_new_tokens": 5,
        "temperature": 0.0,
        "top_p": 1.0,
        "repetition_penalty": 1.1,
        "batch_size": 3,
        "seed": None,
        "max_thinking_tokens": 0,
        "stop_loops": False,
    }
    assert d.to_dict() == want
    assert Decoding(**d.to_dict()) == d
    assert [f.name for f in dataclasses.fields(Decoding)] == list(d.to_dict())


@pytest.mark.parametrize(
    "kw",
    [
        dict(max_new_tokens=1),
        dict(batch_size=1),
        dict(temperature=0.0),
        dict(top_p=1.0),
        dict(top_p=1e-6),
        dict(repetition_penalty=1e-3),
        dict(seed=None),
        dict(temperature=2.5),
        dict(max_thinking_tokens=0),
    ],
)
def test_edge_values_are_accepted(kw):
    d = Decoding(**kw)
    for k, v in kw.items():
        assert getattr(d, k) == v


@pytest.mark.parametrize(
    "kw, shown",
    [
        (dict(max_new_tokens=0), "max_new_tokens 0"),
        (dict(max_new_tokens=-5), "max_new_tokens -5"),
        (dict(batch_size=0), "batch_size 0"),
        (dict(temperature=-0.1), "temperature -0.1"),
        (dict(temperature=math.nan), "temperature nan"),  # NaN compares false both ways: it must not pass as greedy
        (dict(top_p=0.0), "top_p 0.0"),
        (dict(top_p=1.01), "top_p 1.01"),
        (dict(top_p=math.nan), "top_p nan"),
        (dict(repetition_penalty=0.0), "repetition_penalty 0.0"),
        (dict(repetition_penalty=-1.0), "repetition_penalty -1.0"),
        (dict(temperature=math.inf), "temperature inf"),  # issue 13: non-finite settings are refused up front
        (dict(repetition_penalty=math.inf), "repetition_penalty inf"),
    ],
)
def test_out_of_range_values_are_user_errors_that_name_the_value(kw, shown):
    with pytest.raises(UserError) as e:
        Decoding(**kw)
    msg = str(e.value)
    assert msg.startswith("Generation settings out of range (")
    assert shown in msg
    assert (
        "max new tokens and batch size must be at least 1, temperature 0 (greedy) or more and finite, top p in (0, 1], repetition penalty above 0 and finite."
        in msg
    )
    assert e.value.exit_code == 2 and "\n" not in msg
