"""`thinktune merge`: base + LoRA adapter folded into one plain transformers folder."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .atomic import temp_dir
from .errors import UserError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def base_model_of(run_dir: Path) -> str:
    """The base model a run folder was trained from: its config.yaml, else the adapter config."""
    from . import config as config_mod

    if (run_dir / "config.yaml").exists():
        return config_mod.load(run_dir / "config.yaml").model.name
    import json

    adapter_cfg = run_dir / "adapter_config.json"
    if not adapter_cfg.exists():
        raise UserError(f"{run_dir} holds no adapter (adapter_config.json); give a thinktune run folder.")
    return json.loads(adapter_cfg.read_text())["base_model_name_or_path"]


def merge(run_dir: Path, out: Path, dtype: str = "bf16", overwrite: bool = False) -> Path:
    """Merge the adapter into its base in fp32, then cast to `dtype` and save (safetensors,
    config, tokenizer with the chat template, generation_config with the tokenizer's eos).
    The folder loads with AutoModelForCausalLM alone: no thinktune, no PEFT."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    from .model import load_model, resolve

    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}.")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} is not empty; pass --overwrite to replace it, or choose another --out.")
    source = resolve(base_model_of(run_dir))
    tokenizer = AutoTokenizer.from_pretrained(run_dir)  # the run saved its tokenizer and template
    base = load_model(source, torch.float32, "cpu")
    model = PeftModel.from_pretrained(base, run_dir).merge_and_unload()
    model = model.to(DTYPES[dtype])
    gen = model.generation_config
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        gen.bos_token_id = tokenizer.bos_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    with temp_dir(out.resolve().parent, f".{out.name}.tmp-") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if out.exists():
            import shutil

            shutil.rmtree(out)
        os.replace(tmp, out)
    return out
