"""`thinktune rl` end to end on CPU: GRPO steps of a tiny model change the adapter, the metrics
hold every component, kill -9 + --resume gives the same adapter, an SFT adapter is continued, and
the run folder is SFT's kind. fp32 throughout: exact comparisons hold on every CPU."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from thinktune import config
from thinktune.errors import UserError
from thinktune.rl.grpo import prompt_rows, train_rl, trl_prompt, use_vllm
from thinktune.rl.items import load_items

ITEMS = [
    {"question": f"Which option is number {i}?", "options": {"A": f"number {i}", "B": f"number {i + 1}", "C": "neither"}, "answer_idx": "A"} for i in range(12)
]


@pytest.fixture(scope="module")
def tiny_rl(tmp_path_factory, r1_tokenizer_dir):
    """A tiny random Qwen2 with the real R1 tokenizer whose end token is likely enough that
    completions end at different lengths: the length reward then varies within a group, so
    GRPO has an advantage to follow even though nothing else is ever right."""
    from transformers import AutoTokenizer

    from conftest import tiny_model  # type: ignore[import-not-found]

    folder = tmp_path_factory.mktemp("tiny-rl")
    model = tiny_model("qwen2", 151936, seed=0)
    tok = AutoTokenizer.from_pretrained(r1_tokenizer_dir)
    with torch.no_grad():
        model.lm_head.weight[tok.eos_token_id] = 0.6
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    data = folder.parent / "items.json"
    data.write_text(json.dumps(ITEMS), encoding="utf-8")
    return folder, data


def sets(tiny, out: Path, *more: str) -> list[str]:
    folder, data = tiny
    return [
        f"model.name={folder}",
        "model.precision=fp32",
        f"rl.data={data}",
        "rl.adapter=null",
        "rl.exclude=[]",
        "rl.num_generations=4",
        "rl.prompts_per_step=2",
        "rl.max_completion_length=24",
        "rl.overlong_buffer=20",
        "rl.lr=1e-2",
        "rl.completions_every=1",
        "lora.dropout=0",
        f"train.output_dir={out}",
        *more,
    ]


COMPONENT_KEYS = {f"{c}_{s}" for c in ("correctness", "format", "stated", "length") for s in ("mean", "std")}
STEP_KEYS = {"step", "loss", "lr", "grad_norm", "reward", "reward_std", "accuracy", "format_rate", "unparsed_rate", "cut_rate", "completion_length"}


def test_two_grpo_steps_change_the_adapter_and_log_every_component(tiny_rl, tmp_path):
    out = tmp_path / "rl"
    events: list = []
    result = train_rl(config.load(None, sets(tiny_rl, out, "rl.steps=2")), on_event=events.append)
    said = [getattr(e, "text", "") for e in events]
    assert "Gradient checkpointing off (train.gradient_checkpointing=null, so on for a GPU and off on a CPU)." in said
    adapter = load_file(out / "adapter_model.safetensors")
    moved = max(float(t.abs().max()) for k, t in adapter.items() if "lora_B" in k)
    assert moved > 1e-3  # a fresh LoRA starts with B = 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        assert STEP_KEYS | COMPONENT_KEYS <= set(r), set(STEP_KEYS | COMPONENT_KEYS) - set(r)
        assert r["correctness_mean"] == r["accuracy"]
    rows = [json.loads(line) for line in (out / "completions.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in rows] == [1] * 8 + [2] * 8  # every completion of both steps (completions_every=1)
    step1 = [r for r in rows if r["step"] == 1]
    assert sum(r["rewards"]["length"] for r in step1) / 8 == pytest.approx(records[0]["length_mean"], abs=1e-6)
    s = json.loads((out / "summary.json").read_text())
    assert (s["stage"], s["optimizer_steps"], s["completions"], s["items_used"]) == ("rl", 2, 16, 12)
    assert s == result.summary | {"warnings": s["warnings"]}
    names = {p.name for p in out.iterdir()}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "config.yaml",
        "metrics.jsonl",
        "reward_curve.png",
        "completions.jsonl",
        "summary.json",
        "README.md",
    } <= names
    assert "checkpoints" not in names and not (tmp_path / ".rl.partial").exists()
    assert config.load(out / "config.yaml").rl.steps == 2
    assert "GRPO" in (out / "README.md").read_text()


def test_trl_tokenizes_the_prompt_as_thinktune_eval_does(tiny_rl, r1_tokenizer):
    """TRL adds the tokenizer's bos to a text prompt: the template's is taken off, so the ids
    TRL makes are those of `thinktune eval` (one bos, not two)."""
    from thinktune.data.encode import bos_prefix, tokenize

    items = load_items(str(tiny_rl[1]))
    rl = config.load(None, []).rl
    rows, too_long = prompt_rows(items, r1_tokenizer, rl)
    assert too_long == 0 and len(rows) == 12
    text = items.rendered(r1_tokenizer, items.items[0], True)
    want = tokenize(r1_tokenizer, text)
    assert want[0] == r1_tokenizer.bos_token_id and want[1] != r1_tokenizer.bos_token_id
    assert bos_prefix(r1_tokenizer) == [r1_tokenizer.bos_token_id]  # the tokenizer adds one itself
    assert r1_tokenizer(rows[0]["prompt"])["input_ids"] == want == r1_tokenizer(trl_prompt(r1_tokenizer, text, True))["input_ids"]
    assert json.loads(rows[0]["options"]) == ITEMS[0]["options"] and rows[0]["gold"] == "A"


def test_long_prompts_are_left_out_and_counted(tiny_rl, r1_tokenizer):
    rl = config.load(None, ["rl.max_prompt_length=20"]).rl
    rows, too_long = prompt_rows(load_items(str(tiny_rl[1])), r1_tokenizer, rl)
    assert (len(rows), too_long) == (0, 12)


def rl_command(tiny, out: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "thinktune", "rl"]
    for s in sets(tiny, out, "rl.steps=6", "train.save_steps=2", "train.save_total_limit=null"):
        cmd += ["--set", s]
    return cmd + list(extra)


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def sealed(out: Path) -> list[Path]:
    ck = out.parent / f".{out.name}.partial" / "checkpoints"
    return sorted(ck.glob("checkpoint-*/thinktune_checkpoint.json")) if ck.is_dir() else []


def test_sigkill_then_resume_equals_the_uninterrupted_run(tiny_rl, tmp_path):
    straight = tmp_path / "straight"
    p = run(rl_command(tiny_rl, straight))
    assert p.returncode == 0, p.stderr[-3000:]
    out = tmp_path / "killed"
    proc = subprocess.Popen(rl_command(tiny_rl, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        while len(sealed(out)) < 1:
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert not out.exists()
    p = run(rl_command(tiny_rl, out, "--resume"))
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["resumed_from_step"] in (2, 4) and summary["optimizer_steps"] == 6
    a, b = load_file(straight / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
    assert a.keys() == b.keys() and max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    strip = lambda path: [{k: v for k, v in json.loads(line).items()} for line in path.read_text(encoding="utf-8").splitlines()]  # noqa: E731
    assert strip(out / "metrics.jsonl") == strip(straight / "metrics.jsonl")
    assert strip(out / "completions.jsonl") == strip(straight / "completions.jsonl")  # no step logged twice


def test_an_sft_run_is_continued(smoke_run, tmp_path):
    """rl.adapter: the SFT adapter is the start (loaded trainable), and RL moves it; with rl.beta > 0
    the KL is logged and TRL's frozen copy of the start ("ref") is not saved with the adapter."""
    cfg_sft, sft_dir, _, _, _ = smoke_run
    data = tmp_path / "items.json"
    data.write_text(json.dumps(ITEMS[:4]), encoding="utf-8")
    out = tmp_path / "rl"
    cfg = config.load(
        None,
        [
            "model.name=smollm2-demo",
            "model.precision=fp32",
            f"rl.data={data}",
            f"rl.adapter={sft_dir}",
            "rl.exclude=[]",
            "rl.num_generations=2",
            "rl.prompts_per_step=1",
            "rl.max_completion_length=12",
            "rl.overlong_buffer=10",
            "rl.temperature=1.5",
            "rl.steps=1",
            "rl.lr=1e-3",
            "rl.beta=0.04",
            f"train.output_dir={out}",
        ],
    )
    train_rl(cfg)
    start, after = load_file(sft_dir / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
    assert start.keys() == after.keys()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == cfg_sft.lora.r
    diff = max(float((start[k] - after[k]).abs().max()) for k in start)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # the step moved the adapter exactly when its group's rewards differed (the KL's gradient is 0 at the start)
    assert (diff > 0) == (records[0]["reward_std"] > 0), (diff, records[0])
    assert records[0]["kl"] == 0.0  # the policy is its reference before the first update
    assert [p.name for p in out.iterdir() if p.is_dir()] == []  # no ref/ beside the adapter


def test_an_adapter_of_another_base_is_refused(smoke_run, tiny_rl, tmp_path):
    _, sft_dir, _, _, _ = smoke_run
    cfg = config.load(None, sets(tiny_rl, tmp_path / "rl", f"rl.adapter={sft_dir}"))
    with pytest.raises(UserError, match="was trained on smollm2-demo, but model.name is"):
        train_rl(cfg)
    assert not (tmp_path / "rl").exists() and not (tmp_path / ".rl.partial").exists()


def test_vllm_is_asked_for_clearly():
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        use_vllm("vllm", "cpu")
    assert use_vllm("auto", "cpu") is False and use_vllm("transformers", "cuda") is False


class Said:
    """What a stage told the user: run.say's lines, with the run's config and records."""

    def __init__(self, records, *sets):
        self.cfg, self.records, self.lines = config.load(None, list(sets)), records, []

    def say(self, text, level="info"):
        self.lines.append((level, text))


def test_the_trap_is_called_out_loudly():
    """Most completions cut, or no group's rewards differing: a warning at the step it first
    happens, and the count at the end."""
    from thinktune.rl.grpo import RlProgress, closing_warnings

    recs = [{"step": i, "reward": -1.0, "cut_rate": 1.0, "flat_groups": 1.0} for i in range(1, 4)] + [
        {"step": 4, "reward": 0.2, "cut_rate": 0.25, "flat_groups": 0.0}
    ]
    run = Said(recs, "rl.max_completion_length=64", "rl.overlong_buffer=16")
    progress = RlProgress(run)  # type: ignore[arg-type]
    for r in recs:
        progress.warn(r)
    closing_warnings(run, 4)  # type: ignore[arg-type]
    warnings = [text for level, text in run.lines if level == "warning"]
    assert len(warnings) == 4
    assert warnings[0].startswith("step 1: 100% of the completions were cut at rl.max_completion_length=64")
    assert warnings[1].startswith("step 1: in every group all 8 completions got the same reward")
    assert warnings[2:] == [
        "3 of 4 steps had most completions cut at rl.max_completion_length: raise it, or the run mostly learns to be short.",
        "3 of 4 steps learned nothing: in every group all completions got the same reward.",
    ]


def test_qlora_and_vllm_off_cuda_fail_before_anything_is_written(tiny_rl, tmp_path):
    for extra, message in (("model.load_in_4bit=true", "needs a CUDA GPU: bitsandbytes"), ("rl.generator=vllm", "rl.generator=vllm needs a CUDA GPU")):
        with pytest.raises(UserError, match=message):
            train_rl(config.load(None, sets(tiny_rl, tmp_path / "rl", extra)))
        assert not (tmp_path / "rl").exists() and not (tmp_path / ".rl.partial").exists()
