"""thinktune.plan: exact parameter counts, name resolution, the search for settings that fit,
and the estimate against peak memory measured on this CPU (fp32) in fresh processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from conftest import ROOT
from thinktune.errors import UserError
from thinktune.plan import KNOWN, GiB, ModelDims, dims_from, estimate, fit
from thinktune.plan_text import format_plan

R1_7B = KNOWN["deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"]
R1_1_5B = KNOWN["deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"]
SMOLLM2 = KNOWN["smollm2-demo"]


def test_params_equal_the_published_counts():
    assert R1_7B.params == 7_615_616_512  # Qwen2.5-7B's published count, untied lm_head included
    assert replace(R1_1_5B, tied_embeddings=True).params == 1_543_714_304  # Qwen2.5-1.5B, which ties
    assert R1_1_5B.params == 1_543_714_304 + 151936 * 1536  # the R1 distill has its own lm_head: 1.78B
    assert SMOLLM2.params == 134_515_008  # what the demo model loaded below has (sum of numel)


def test_known_names_and_aliases_resolve_offline():
    assert dims_from("r1-7b") is R1_7B and dims_from("R1-1.5B") is R1_1_5B
    assert dims_from("DeepSeek-R1-Distill-Qwen-7B") is R1_7B  # the hub id's suffix, any case
    assert dims_from("deepseek-ai/deepseek-r1-distill-qwen-1.5b") is R1_1_5B
    assert dims_from("smollm2-demo") is SMOLLM2 and dims_from("HuggingFaceTB/SmolLM2-135M-Instruct") is SMOLLM2


def test_dims_from_reads_a_folder_or_its_config_json(tmp_path):
    config = {
        "model_type": "qwen2",
        "hidden_size": 1536,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "intermediate_size": 8960,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    }
    (tmp_path / "qwen").mkdir()
    (tmp_path / "qwen" / "config.json").write_text(json.dumps(config))
    d = dims_from(str(tmp_path / "qwen"))
    assert (d.hidden, d.layers, d.heads, d.kv_heads, d.ffn, d.vocab) == (1536, 28, 12, 2, 8960, 151936)
    assert d.tied_embeddings and d.attention_bias and d.name == "qwen"  # qwen2: q/k/v biases
    assert d.params == 1_543_714_304
    # A Llama config without num_key_value_heads has one KV head per head, and no biases.
    llama = {"model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128, "vocab_size": 100}
    (tmp_path / "llama.json").write_text(json.dumps(llama))
    d = dims_from(str(tmp_path / "llama.json"))
    assert (d.kv_heads, d.attention_bias, d.tied_embeddings) == (4, False, False)
    assert d.params == 100 * 64 * 2 + 2 * (4 * 64 * 64 + 3 * 64 * 128 + 2 * 64) + 64


def test_unknown_name_offline_is_a_user_error_naming_the_known_models():
    start = time.monotonic()
    with pytest.raises(UserError) as e:
        dims_from("someone/no-such-model")  # offline here; online it is a 404, the same error
    msg = str(e.value)
    assert all(name in msg for name in KNOWN) and "r1-7b" in msg and "config.json" in msg and "offline" in msg.lower()
    assert time.monotonic() - start < 10  # not huggingface_hub's ~25 s of retries
    with pytest.raises(UserError, match="known models"):
        dims_from("no-such-model")  # not a hub id at all: no network try


def test_qlora_on_cpu_is_refused():
    with pytest.raises(UserError, match="bitsandbytes.*CUDA|CUDA.*bitsandbytes"):
        estimate(SMOLLM2, "qlora", 512, 1, device="cpu")


def test_estimate_parts_follow_the_formulas():
    e = estimate(R1_7B, "lora", 2048, 1, head_on_labels=False)
    trainable = 28 * 16 * ((3584 + 3584) + (3584 + 512))  # q: 3584 -> 3584, v: 3584 -> 512
    assert e.trainable == trainable and e.adapter_and_optimizer == 16 * trainable
    assert e.weights == 2 * R1_7B.params  # bf16
    assert e.logits == 3 * 2048 * 152064 * 4  # 3.5 GiB of fp32 logits...
    assert estimate(R1_7B, "lora", 2048, 1).logits < 0.4 * GiB  # ...the head on labels keeps a chunk
    q = estimate(R1_7B, "qlora", 2048, 1)
    quantised = 28 * (2 * 3584 * 3584 + 2 * 3584 * 512 + 3 * 3584 * 18944)
    rest = R1_7B.params - quantised  # embeddings, lm_head, norms, biases: bf16
    assert q.weights == int((0.5 + 0.127 / 8) * quantised + 2 * rest + 2 * 3584 * 18944)  # + one dequantised matrix
    full = estimate(R1_7B, "full", 2048, 1, checkpointing=True)
    assert full.weights + full.adapter_and_optimizer == 16 * R1_7B.params  # ZeRO's 16 bytes a parameter
    with_ckpt = estimate(R1_7B, "qlora", 2048, 1, checkpointing=True)
    assert with_ckpt.activations < q.activations / 8  # keeps 28 layer inputs instead of 28 layers


def test_fit_7b_on_8gb_needs_qlora_with_checkpointing():
    # LoRA's bf16 weights alone are 14.2 GiB; NF4 brings them to 5.3 GiB, and then even 512
    # tokens without checkpointing keep 28 layers of activations (9.2 GiB in all), so the
    # first fit is QLoRA, batch 1, checkpointing, at 2048 (4096 needs more than 8 GiB).
    f = fit(R1_7B)
    assert (f.chosen.method, f.chosen.batch, f.chosen.checkpointing, f.chosen.seq_len) == ("qlora", 1, True, 2048)
    assert estimate(R1_7B, "lora", 512, 1, checkpointing=True).weights > 8 * GiB
    assert estimate(R1_7B, "qlora", 512, 1).total > 8 * GiB
    # The longest max length is a multiple of 64 that fits while 64 more does not.
    n = f.longest.seq_len
    assert n % 64 == 0 and n > 2048 and f.longest.total <= 8 * GiB
    assert estimate(R1_7B, "qlora", n + 64, 1, checkpointing=True).total > 8 * GiB
    text = format_plan(f)
    assert f"DeepSeek-R1-Distill-Qwen-7B in 8.00 GiB: QLoRA, batch 1, gradient checkpointing, max length {n} " in text
    plan_row = next(line for line in text.splitlines() if line.endswith("<- plan"))
    assert f"{f.longest.weights / GiB:.2f}" in plan_row and f"{f.longest.total / GiB:.2f}" in plan_row
    assert "Assumptions" in text


def test_fit_prefers_length_then_lora_then_no_checkpointing_then_batch():
    # 1.5B at 4096: LoRA without checkpointing needs 15 GiB even at batch 1; with it, batch 4
    # needs 8.6 GiB and batch 2 fits. QLoRA is not reached since LoRA fits at this length.
    f = fit(R1_1_5B)
    assert (f.chosen.method, f.chosen.seq_len, f.chosen.checkpointing, f.chosen.batch) == ("lora", 4096, True, 2)
    assert estimate(R1_1_5B, "lora", 4096, 4, checkpointing=True).total > 8 * GiB
    assert estimate(R1_1_5B, "lora", 4096, 1).total > 14 * GiB
    # On CPU there is no QLoRA to fall back to.
    assert fit(R1_7B, device="cpu", budget_bytes=64 * GiB).chosen.method == "lora"


def test_nothing_fits_says_so_with_the_smallest_setting():
    f = fit(R1_7B, budget_bytes=4 * GiB)
    assert f.chosen is None and f.longest is None
    s = f.smallest
    assert (s.method, s.batch, s.checkpointing, s.seq_len) == ("qlora", 1, True, 512) and s.total > 4 * GiB
    assert "does not fit in 4.00 GiB even with QLoRA, batch 1, gradient checkpointing at max length 512" in format_plan(f)


# Measured: one LoRA (r16 on q_proj, v_proj) step, forward + backward + fused AdamW, in a
# fresh process. Its peak is VmHWM, the high-water mark of the process's own pages. It is what
# ru_maxrss reports in a process started from a small parent, but ru_maxrss also takes in the
# parent's peak at exec (Linux's exec_mmap), which under a big pytest process (torch and a
# model loaded) would be the parent's: so both are reported and VmHWM is compared.
MEASURE = r"""
import json, resource, sys
cfg = json.loads(sys.argv[1])
import torch, peft
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Trainer  # noqa: F401 - as a training run
torch.set_num_threads(1)  # modest CPU; memory differs only by per-thread scratch
torch.manual_seed(0)
if cfg["arch"] == "smollm2-demo":
    from thinktune.model import _gguf_cache, load_model, resolve
    _gguf_cache(resolve("smollm2-demo"))  # converted once; that one-off peak is not training's
    open("/proc/self/clear_refs", "w").write("5")  # so reset VmHWM to the current RSS
    model = load_model(resolve("smollm2-demo"), torch.float32, "cpu", "auto")
else:
    Config, Model = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}[cfg["arch"]]
    model = Model(Config(hidden_size=cfg["hidden"], num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"],
                         num_key_value_heads=cfg["kv_heads"], intermediate_size=cfg["ffn"], vocab_size=cfg["vocab"],
                         tie_word_embeddings=cfg["tied"]))
if cfg["checkpointing"]:
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
lora = peft.LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=cfg["dropout"], target_modules=["q_proj", "v_proj"])
model = peft.get_peft_model(model, lora)
model.train()
b, s = cfg["batch"], cfg["seq_len"]
ids = torch.randint(0, model.config.vocab_size, (b, s))
mask, labels = torch.ones(b, s, dtype=torch.long), ids.clone()
if b > 1:  # right-padded like thinktune's collator: the last row a quarter shorter
    mask[-1, s - s // 4:], labels[-1, s - s // 4:] = 0, -100
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, fused=True)
if cfg.get("head_on_labels"):  # as ThinktuneTrainer does: hidden states out, head on labels in chunks
    from thinktune.speed import choose_loss
    loss_path, _ = choose_loss(model, True, False, "cpu", "NO")
    loss_path(model(**loss_path.model_inputs({"input_ids": ids, "attention_mask": mask})), labels).backward()
else:
    model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
opt.step()
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]
print(json.dumps({"ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "vmhwm_kib": int(hwm)}))
"""


def measure_peak(cfg: dict) -> dict:
    """Peak RSS (KiB) of one LoRA training step in a fresh python process."""
    r = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(cfg)], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _tiny(arch, hidden, layers, heads, kv_heads, ffn, vocab, tied, **run):
    return dict(arch=arch, hidden=hidden, layers=layers, heads=heads, kv_heads=kv_heads, ffn=ffn, vocab=vocab, tied=tied, **run)


CASES = {
    # logits-heavy: vocab 32000, batch 2 (padded), seq 1024, peft's default dropout 0
    "llama-256x4-v32k-b2-s1024": _tiny("llama", 256, 4, 4, 2, 688, 32000, True, batch=2, seq_len=1024, checkpointing=False, dropout=0.0),
    # the same through thinktune's head on labelled positions (7/8 of them here)
    "llama-256x4-v32k-b2-s1024-head": _tiny(
        "llama", 256, 4, 4, 2, 688, 32000, True, batch=2, seq_len=1024, checkpointing=False, dropout=0.0, head_on_labels=True
    ),
    # long sequence, small untied vocab, gradient checkpointing, dropout 0.05
    "qwen2-256x4-v8k-s2048-ckpt": _tiny("qwen2", 256, 4, 4, 2, 688, 8000, False, batch=1, seq_len=2048, checkpointing=True, dropout=0.05),
    # mid-size (39M), activations as large as the logits
    "llama-512x8-v32k-s1024": _tiny("llama", 512, 8, 8, 4, 1408, 32000, True, batch=1, seq_len=1024, checkpointing=False, dropout=0.05),
    # the real demo model
    "smollm2-135m-s512": dict(arch="smollm2-demo", batch=1, seq_len=512, checkpointing=False, dropout=0.05),
}


@pytest.mark.parametrize("case", list(CASES))
def test_estimate_is_within_25_percent_of_measured_cpu_peak(case):
    cfg = CASES[case]
    dims = (
        SMOLLM2
        if cfg["arch"] == "smollm2-demo"
        else ModelDims(
            cfg["hidden"],
            cfg["layers"],
            cfg["heads"],
            cfg["kv_heads"],
            cfg["ffn"],
            cfg["vocab"],
            cfg["tied"],
            case,
            model_type=cfg["arch"],
            attention_bias=cfg["arch"] == "qwen2",
        )
    )
    e = estimate(
        dims,
        "lora",
        cfg["seq_len"],
        cfg["batch"],
        checkpointing=cfg["checkpointing"],
        device="cpu",
        head_on_labels=cfg.get("head_on_labels", False),
        labelled_fraction=7 / 8,
        lora_dropout=cfg["dropout"],
    )
    m = measure_peak(cfg)
    measured = m["vmhwm_kib"] * 1024
    print(
        f"{case}: measured {measured / 2**20:.0f} MiB (ru_maxrss {m['ru_maxrss_kib'] / 1024:.0f}), estimate {e.total / 2**20:.0f} MiB, ratio {e.total / measured:.3f}"
    )
    assert m["ru_maxrss_kib"] >= m["vmhwm_kib"]
    assert 0.75 <= e.total / measured <= 1.25


@pytest.mark.parametrize("memory", ["nan", "inf", "-inf", "1e308", "0", "-3"])
def test_plan_memory_must_be_a_finite_positive_budget(capsys, memory):
    from thinktune.cli import main

    assert main(["plan", "--model", "smollm2-demo", f"--memory={memory}"]) == 2  # "=": argparse reads a bare -inf as a flag
    err = capsys.readouterr().err
    assert err.startswith("thinktune: error: --memory must be a finite positive number of GiB") and "Traceback" not in err
