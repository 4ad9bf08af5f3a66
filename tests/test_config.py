"""Config: shipped YAMLs load, their comments quote the real defaults, unknown keys are errors."""

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from thinktune import config
from thinktune.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
YAMLS = sorted((ROOT / "examples").glob("*.yaml"))
LINE = re.compile(r"^\s+(\w+):\s*(.*?)\s+#\s*(.*)$")


def _defaults() -> dict:
    return config.Config().to_dict()


def test_there_are_shipped_configs():
    assert {p.name for p in YAMLS} >= {"medical_r1.yaml", "demo.yaml"}


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_every_key_is_commented_and_quotes_its_default(path):
    defaults = _defaults()
    section = None
    checked = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if re.match(r"^(\w+):\s*$", line):
            section = line.rstrip(":").strip()
            continue
        if not line.startswith("  ") or line.strip().startswith("#") or not line.strip():
            continue
        m = LINE.match(line)
        assert m, f"{path.name}: setting without a comment: {line!r}"
        key, _, comment = m.groups()
        quoted = re.search(r"\(default ([^)]*)\)\s*$", comment)
        assert quoted, f"{path.name}: comment of {section}.{key} does not quote its default"
        assert yaml.safe_load(quoted.group(1)) == defaults[section][key], f"{section}.{key}"
        assert len(comment) > 30, f"{section}.{key}: the comment should explain the knob"
        checked += 1
    assert checked >= 5
    config.load(path)  # and the file itself loads


def test_reference_recipe_equals_the_defaults():
    cfg = config.load(ROOT / "examples" / "medical_r1.yaml")
    assert cfg == config.Config()
    # every setting appears in the reference file
    keys = {f"{s}.{k}" for s, v in yaml.safe_load((ROOT / "examples" / "medical_r1.yaml").read_text()).items() for k in v}
    assert keys == {name for name, _, _ in config.knobs()}


def test_tutorial_recipe_is_the_default():
    c = config.Config()
    assert (c.lora.r, c.lora.alpha, c.lora.dropout, c.lora.target_modules) == (16, 32, 0.05, ["q_proj", "v_proj"])
    assert (c.train.batch_size, c.train.grad_accum, c.train.epochs, c.train.lr) == (2, 4, 3, 3e-4)
    assert (c.data.limit, c.model.name) == (1500, "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B")
    assert c.train.logging_steps == 20
    # not the tutorial: a resumable checkpoint every 100 updates, the newest 2 kept (issue 6)
    assert (c.train.save_steps, c.train.save_total_limit) == (100, 2)


def test_every_knob_has_a_one_sentence_help():
    for name, f, _ in config.knobs():
        text = f.metadata["help"]
        assert text and text.endswith(".") and len(text) > 20, name


def test_unknown_keys_are_errors(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("lora:\n  rank: 8\n")
    with pytest.raises(ConfigError, match=r"unknown setting 'lora.rank'.*Did you mean 'lora.r'"):
        config.load(p)
    p.write_text("loras:\n  r: 8\n")
    with pytest.raises(ConfigError, match="unknown setting 'loras'"):
        config.load(p)


def test_types_and_choices_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="'lora.r' must be a int"):
        config.load(None, ["lora.r=big"])
    with pytest.raises(ConfigError, match="one of drop, truncate"):
        config.load(None, ["data.overflow=cut"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        config.load(None, ["r=3"])


def test_ranges_are_checked():
    with pytest.raises(ConfigError, match=r"warmup_ratio must be in \[0, 1\)"):
        config.load(None, ["train.warmup_ratio=1.5"])
    with pytest.raises(ConfigError, match="data.limit must be at least 1"):
        config.load(None, ["data.limit=0"])


def test_overrides_apply_with_types():
    cfg = config.load(None, ["lora.r=32", "data.limit=500", "train.lr=1e-4", "lora.target_modules=q_proj,k_proj", "data.limit=null"])
    assert cfg.lora.r == 32 and cfg.train.lr == 1e-4 and cfg.lora.target_modules == ["q_proj", "k_proj"]
    assert cfg.data.limit is None
    assert isinstance(config.load(None, ["train.epochs=2"]).train.epochs, float)


def test_dump_round_trips(tmp_path):
    cfg = config.load(None, ["lora.r=8", "train.output_dir=x"])
    p = tmp_path / "out.yaml"
    p.write_text(config.dump(cfg))
    assert config.load(p) == cfg
    assert dataclasses.asdict(config.load(p)) == cfg.to_dict()
