"""Two languages: no string of the page lacks its translation, and the page asks for no string
that is not there."""

from __future__ import annotations

import doctest
import re
import string

from conftest import ROOT
from thinktune import config
from thinktune.ui import text
from thinktune.ui.text import KNOB_ZH, LANGS, STRINGS, knob_help, tr

UI = ROOT / "src" / "thinktune" / "ui"
CJK = re.compile(r"[\u4e00-\u9fff]")


def test_docstring_examples_run():
    assert doctest.testmod(text).failed == 0


def keys_asked_for() -> set[str]:
    """Every key the page's code passes to tr / t, its `kind_` and `state_` families expanded."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in UI.glob("*.py"))
    found = set(re.findall(r"""\bt(?:r\(lang, |\()["'](\w+)["']\)""", source))
    found |= {"kind_" + k for k in ("prompt", "thinking", "answer", "end", "pad")}
    found |= {"state_" + s for s in ("starting", "running", "stopping", "finished", "stopped", "failed")}
    found |= {"section_" + s for s in ("model", "data", "lora", "train")}
    return found


def test_every_string_has_both_languages_with_the_same_placeholders():
    for key, pair in STRINGS.items():
        assert len(pair) == len(LANGS) and all(s.strip() for s in pair), key
        en, zh = pair
        fields = [sorted(f for _, f, _, _ in string.Formatter().parse(s) if f is not None) for s in pair]
        assert fields[0] == fields[1], (key, en, zh)
        assert key == "other_language" or CJK.search(zh), (key, zh)  # translated, not copied


def test_the_page_asks_only_for_strings_that_exist_and_every_string_is_used():
    asked = keys_asked_for()
    assert asked - set(STRINGS) == set()
    assert set(STRINGS) - asked == set()
    assert len(asked) > 80


def test_every_setting_has_its_chinese_help():
    names = [n for n, _, _ in config.knobs() if not n.startswith("rl.")]  # the page's form (ui/form.py)
    assert set(KNOB_ZH) == set(names)
    for name in names:
        assert CJK.search(knob_help("zh", name)) and knob_help("en", name) == next(f.metadata["help"] for n, f, _ in config.knobs() if n == name)
    assert tr("zh", "tab_data") == "数据" and tr("en", "tab_data") == "Data"
