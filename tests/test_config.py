"""Config: shipped YAMLs load, their comments quote the real defaults, unknown keys are errors."""

import dataclasses
import re
import typing
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
        quoted = re.search(r"\((?:default|默认) ([^)]*)\)\s*$", comment)  # 默认: the Chinese recipe's "default"
        assert quoted, f"{path.name}: comment of {section}.{key} does not quote its default"
        assert yaml.safe_load(quoted.group(1)) == defaults[section][key], f"{section}.{key}"
        cjk = re.search(r"[\u4e00-\u9fff]", comment)  # a Chinese sentence says as much in half the characters
        assert len(comment) > (15 if cjk else 30), f"{section}.{key}: the comment should explain the knob"
        checked += 1
    assert checked >= 5
    config.load(path)  # and the file itself loads


def test_reference_recipe_equals_the_defaults():
    cfg = config.load(ROOT / "examples" / "medical_r1.yaml")
    assert cfg == config.Config()
    # every setting appears in the reference file
    keys = {f"{s}.{k}" for s, v in yaml.safe_load((ROOT / "examples" / "medical_r1.yaml").read_text()).items() for k in v}
    assert keys == {name for name, _, _ in config.knobs() if not name.startswith("rl.")}  # stage two's: medical_rl.yaml


def test_the_rl_recipe_spells_out_every_rl_setting_at_its_default():
    raw = yaml.safe_load((ROOT / "examples" / "medical_rl.yaml").read_text())
    assert set(raw["rl"]) == {name.split(".", 1)[1] for name, _, _ in config.knobs() if name.startswith("rl.")}
    cfg = config.load(ROOT / "examples" / "medical_rl.yaml")
    assert cfg.rl == config.RlConfig() and cfg.model == config.ModelConfig()
    assert (cfg.train.output_dir, cfg.rl.adapter) == ("runs/medical_rl", "runs/medical_r1")  # continues the reference SFT run


def test_the_chinese_recipe_keeps_in_step_with_the_english_one():
    """examples/medical_r1_zh.yaml: the same keys and values as medical_r1.yaml except the data's
    language (hub_config zh) and its own run folder; every comment in Chinese."""
    en = yaml.safe_load((ROOT / "examples" / "medical_r1.yaml").read_text())
    zh_text = (ROOT / "examples" / "medical_r1_zh.yaml").read_text(encoding="utf-8")
    zh = yaml.safe_load(zh_text)
    flat = lambda d: {f"{s}.{k}": v for s, kv in d.items() for k, v in kv.items()}  # noqa: E731
    en_flat, zh_flat = flat(en), flat(zh)
    assert en_flat.keys() == zh_flat.keys()
    assert {k for k in en_flat if en_flat[k] != zh_flat[k]} == {"data.hub_config", "train.output_dir"}
    assert (zh_flat["data.hub_config"], zh_flat["train.output_dir"]) == ("zh", "runs/medical_r1_zh")
    comments = [line.split("#", 1)[1] for line in zh_text.splitlines() if line.startswith("  ") and "#" in line]  # each setting's
    assert len(comments) == len(zh_flat) and all(re.search(r"[\u4e00-\u9fff]", c) for c in comments)
    assert config.load(ROOT / "examples" / "medical_r1_zh.yaml").data.hub_config == "zh"


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
    with pytest.raises(ConfigError, match=r"'train.warmup_ratio' must be in \[0, 1\), got 1.5"):
        config.load(None, ["train.warmup_ratio=1.5"])
    with pytest.raises(ConfigError, match="'data.limit' must be at least 1"):
        config.load(None, ["data.limit=0"])
    with pytest.raises(ConfigError, match="train.rows_per_pass must divide train.batch_size"):
        config.load(None, ["train.batch_size=4", "train.rows_per_pass=3"])


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


def test_a_config_that_is_not_utf8_is_named(tmp_path):
    p = tmp_path / "latin.yaml"
    p.write_bytes(b'model:\n  name: "\xff\xfe"\n')
    with pytest.raises(ConfigError, match=rf"Config file {re.escape(str(p))} is not UTF-8 text.*save it as UTF-8"):
        config.load(p)


@pytest.mark.parametrize("text", ["- a\n- b\n", "[]\n", "just words\n"])
def test_a_top_level_that_is_not_a_mapping_is_named(tmp_path, text):
    p = tmp_path / "list.yaml"
    p.write_text(text)
    for overrides in ([], ["train.lr=1"]):  # --set used to crash on a list (raw.setdefault)
        with pytest.raises(ConfigError, match=rf"Config file {re.escape(str(p))}: expected a mapping of sections \(model, data, lora, train, rl\)"):
            config.load(p, overrides)


@pytest.mark.parametrize(
    "override, message",
    [
        ("lora.dropout=2", r"'lora.dropout' must be in \[0, 1\), got 2.0"),
        ("lora.dropout=-0.1", r"'lora.dropout' must be in \[0, 1\)"),
        ("data.max_length_cap=0", "'data.max_length_cap' must be at least 8, got 0"),
        ("data.max_length=7", "'data.max_length' must be at least 8"),
        ("train.max_grad_norm=-1", "'train.max_grad_norm' must be at least 0, got -1.0. 0 turns gradient clipping off"),
        ("lora.alpha=-5", "'lora.alpha' must be at least 1, got -5"),
        ("lora.alpha=0", "'lora.alpha' must be at least 1"),
        ("data.val_fraction=0.9", r"'data.val_fraction' must be in \[0, 0.5\], got 0.9. Above 0.5 most rows would not be trained on"),
        ("data.val_fraction=-0.1", r"'data.val_fraction' must be in \[0, 0.5\]"),
        ("train.weight_decay=-0.01", "'train.weight_decay' must be at least 0"),
        ("data.val_min_rows=-1", "'data.val_min_rows' must be at least 0"),
        ("train.logging_steps=0", "'train.logging_steps' must be at least 1"),
        ("train.eval_steps=-1", "'train.eval_steps' must be at least 0"),
        ("train.save_steps=-1", "'train.save_steps' must be at least 0"),
        ("train.save_total_limit=0", "'train.save_total_limit' must be at least 1"),
        ("train.rows_per_pass=0", "'train.rows_per_pass' must be at least 1"),
        ("train.batch_size=0", "'train.batch_size' must be at least 1"),
        ("train.grad_accum=0", "'train.grad_accum' must be at least 1"),
        ("train.epochs=0", "'train.epochs' must be more than 0"),
        ("train.lr=0", "'train.lr' must be more than 0"),
        ("train.warmup_ratio=1.5", r"'train.warmup_ratio' must be in \[0, 1\)"),
        ("lora.r=0", "'lora.r' must be at least 1"),
        ("data.limit=0", "'data.limit' must be at least 1"),
        ("train.seed=-1", r"'train.seed' must be in \[0, 4294967295\]"),
        ("train.seed=4294967296", r"'train.seed' must be in \[0, 4294967295\]"),
        ("rl.num_generations=1", "'rl.num_generations' must be at least 2"),
        ("rl.top_p=1.5", r"'rl.top_p' must be in \(0, 1\]"),
        ("rl.epsilon=1", r"'rl.epsilon' must be in \(0, 1\)"),
        ("rl.loss_type=ppo", "'rl.loss_type' must be one of grpo, dr_grpo, dapo, bnpo, cispo, sapo; got 'ppo'"),
        ("rl.overlong_buffer=2048", r"rl.overlong_buffer \(2048\) must be less than rl.max_completion_length \(2048\)"),
        ("rl.exclude=[1]", "'rl.exclude' must be a list of names"),
    ],
)
def test_each_range_is_checked_and_says_what_is_allowed(override, message):
    with pytest.raises(ConfigError, match=rf"^config: {message}"):
        config.load(None, [override])


def test_the_edges_of_each_range_are_allowed():
    edges = ["lora.dropout=0", "data.max_length_cap=8", "train.max_grad_norm=0", "lora.alpha=1", "data.val_fraction=0.5"]
    edges += ["data.val_fraction=0", "data.val_min_rows=0", "train.save_steps=0", "train.eval_steps=0", "train.seed=0", "train.seed=4294967295"]
    cfg = config.load(None, edges)
    assert (cfg.lora.dropout, cfg.data.max_length_cap, cfg.train.max_grad_norm, cfg.data.val_fraction) == (0.0, 8, 0.0, 0.0)


@pytest.mark.parametrize("setting", [name for name, _, typ in config.knobs() if float in (typ, *typing.get_args(typ))])
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", ".inf", ".nan", "1e999", "1" + "0" * 400])
def test_every_float_setting_must_be_finite(setting, value):
    with pytest.raises(ConfigError, match=rf"^config: '{re.escape(setting)}' must be a finite number, got"):
        config.load(None, [f"{setting}={value}"])


def test_a_float_flag_that_is_not_finite_is_named_as_the_flag_value():
    with pytest.raises(ConfigError, match=r"^the value given for train.lr: 'train.lr' must be a finite number, got nan"):
        config.load(None, values={"train.lr": float("nan")})


@pytest.mark.parametrize(
    "value, message",
    [("[1,2]", r"names \(strings\).*got \[1, 2\]"), ("[]", "at least one module"), ("q_proj,", "names"), ("[q_proj, null]", "names")],
)
def test_target_modules_must_be_one_or_more_names(value, message):
    with pytest.raises(ConfigError, match=rf"^config: 'lora.target_modules' must .*{message}"):
        config.load(None, [f"lora.target_modules={value}"])


def test_every_default_is_inside_its_declared_range():
    ranged = 0
    for name, f, _ in config.knobs():
        rng = f.metadata.get("range")
        if rng is not None:
            section, key = name.split(".")
            value = getattr(getattr(config.Config(), section), key)
            assert value is None or value in rng, name
            ranged += 1
    assert ranged >= 20
