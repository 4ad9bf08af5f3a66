"""The settings form (ui/form.py): one field per knob, values that round-trip, the CLI's checks."""

from __future__ import annotations

import doctest

import pytest

from conftest import ROOT
from thinktune import config
from thinktune.errors import ConfigError
from thinktune.ui import form
from thinktune.ui.form import fields, set_args, to_config, values_of


def test_docstring_examples_run():
    assert doctest.testmod(form).failed == 0


def test_one_field_per_setting_with_its_help_and_choices():
    got = {f.name: f for f in fields()}
    assert not any(n.startswith("rl.") for n in got)  # thinktune rl's settings are not on the SFT page
    for name, f, typ in config.knobs():
        if name.startswith("rl."):
            continue
        assert got[name].help == f.metadata["help"] and got[name].choices == f.metadata.get("choices")
        assert got[name].kind == ("bool" if typ is bool else "choice" if f.metadata.get("choices") else "text")


@pytest.mark.parametrize("yaml", ["medical_r1.yaml", "medical_r1_zh.yaml", "demo.yaml"])
def test_every_shipped_config_round_trips_through_the_form_and_its_set_flags(yaml):
    cfg = config.load(ROOT / "examples" / yaml)
    assert to_config(values_of(cfg)) == cfg
    assert config.load(None, [a for a in set_args(cfg) if a != "--set"]) == cfg  # the command the page shows gives the same run


def test_a_bad_value_is_refused_in_the_clis_words():
    with pytest.raises(ConfigError, match=r"the page's settings: 'data.overflow' must be one of drop, truncate; got 'cut'"):
        to_config({"data.overflow": "cut"})
    with pytest.raises(ConfigError, match=r"'train.lr' must be more than 0, got 0"):
        to_config({"train.lr": "0"})
