"""Peak training memory from a model's config alone, and the settings that fit a budget.

`estimate` adds up, in bytes, what one step of LoRA, QLoRA or full fine-tuning holds at its
peak; `fit` finds the first settings under a budget (default 8 GiB, an RTX 4060);
`plan_text.format_plan` prints a table, a one-line recommendation and the command that
applies it. No weights are loaded.

Assumptions
- A Llama/Qwen2-style decoder (RMSNorm, RoPE, SiLU-gated MLP, GQA); no KV cache in training.
- CUDA: bf16 weights and activations. QLoRA: NF4 + double quantisation, 0.5 byte + 0.127 bit
  per attention/MLP weight, dequantised a matrix at a time; embeddings, lm_head, norms, biases
  stay bf16 (prepare_model_for_kbit_training would upcast them). CPU: fp32, and no QLoRA
  (bitsandbytes' 4-bit layers need CUDA).
- 16 bytes per trained parameter: fp32 weight, gradient, two AdamW moments (peft keeps adapters
  fp32; fused AdamW). Full fine-tuning on CUDA is ZeRO-style mixed precision (Rajbhandari et
  al. 2020): bf16 weights and gradients, fp32 master weights and moments.
- Activations: what autograd saves, counted op by op and checked with saved-tensor hooks
  (transformers 5.24, peft 0.21): RMSNorm inputs in fp32; SDPA's q, k, v, output, log-sum-exp;
  SiLU input and output, up projection; each LoRA input (an fp32 copy on bf16 models; with
  dropout the dropped input and mask) and rank-r output; one layer's backward temporaries.
  Fused attention (flash / memory-efficient on GPU, flash on CPU) keeps no seq x seq scores.
  Batches above 1 are padded: the mask turns off SDPA's GQA (k, v repeated to all heads) and
  each layer keeps it as a float bias. Checkpointing (non-reentrant) keeps layer inputs and
  recomputes one layer at a time.
- Logits: the plain path holds three batch x seq x vocab fp32 tensors as the backward starts;
  thinktune's head on labelled positions (speed.Loss) one chunk of 2**25 at a time.
- Overhead: on CUDA the context (0.5 GiB) and 10% of activations and logits for allocator
  fragmentation (unmeasured here); on CPU the process baseline and the heap glibc keeps, both
  measured on Linux (tests/test_plan.py checks totals within 25%).
- Parts are added though the logits' peak passes before the last layer is recomputed: safe
  by at most one layer's activations.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import hub
from .aliases import HUB_ALIASES
from .errors import UserError

GiB = 2**30
NF4_BYTES = 0.5 + 0.127 / 8  # 4-bit codes + (8-bit absmax per 64 + fp32 per 256 absmax) / 8
CUDA_CONTEXT = 0.5 * GiB  # context, cuBLAS workspace, kernels: outside torch's allocator
CUDA_FRAGMENTATION = 0.10
CPU_BASELINE = 450 * 2**20  # VmHWM of a process that imported torch, transformers, peft, Trainer
CPU_RETAINED = 0.40  # glibc keeps freed mid-size activation buffers resident (measured)
HEAD_CHUNK = 2**25  # logits per chunk in speed.linear_cross_entropy
METHODS = ("lora", "qlora", "full")
# The tensor each LoRA module's lora_A reads; modules reading the same one share it.
LORA_INPUT = {"q_proj": "norm1", "k_proj": "norm1", "v_proj": "norm1", "o_proj": "attn", "gate_proj": "norm2", "up_proj": "norm2", "down_proj": "act"}


@dataclass(frozen=True)
class ModelDims:
    """The shape of a Llama/Qwen2-style decoder: enough to count parameters and activations."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    tied_embeddings: bool
    name: str
    model_type: str = "llama"
    attention_bias: bool = False  # Qwen2 has biases on q, k and v
    head_dim: int | None = None  # set when the config gives one apart from hidden / heads

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden // self.heads

    @property
    def q_dim(self) -> int:
        return self.heads * self.hd

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.hd

    @property
    def linear_params(self) -> int:
        """The attention and MLP matrices: what QLoRA quantises."""
        h = self.hidden
        return self.layers * (2 * h * self.q_dim + 2 * h * self.kv_dim + 3 * h * self.ffn)

    @property
    def params(self) -> int:
        h = self.hidden
        biases = self.q_dim + 2 * self.kv_dim if self.attention_bias else 0
        embeddings = self.vocab * h * (1 if self.tied_embeddings else 2)  # + lm_head if untied
        return embeddings + self.linear_params + self.layers * (biases + 2 * h) + h  # norms


_QWEN7: dict[str, Any] = dict(model_type="qwen2", attention_bias=True)
KNOWN = {
    # From the GGUF header of the model (the PyPI package the tests use); Qwen2.5-7B's shape.
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B": ModelDims(3584, 28, 28, 4, 18944, 152064, False, "DeepSeek-R1-Distill-Qwen-7B", **_QWEN7),
    # Qwen2.5-1.5B's shape, untied as its GGUFs show (Q8_0: 1.89 GB = 1.777e9 x 34/32 bytes).
    "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B": ModelDims(1536, 28, 12, 2, 8960, 151936, False, "DeepSeek-R1-Distill-Qwen-1.5B", **_QWEN7),
    # thinktune's offline demo model, HuggingFaceTB/SmolLM2-135M-Instruct.
    "smollm2-demo": ModelDims(576, 30, 9, 3, 1536, 49152, True, "SmolLM2-135M-Instruct"),
}
ALIASES = {**HUB_ALIASES, "huggingfacetb/smollm2-135m-instruct": "smollm2-demo", "huggingfacetb/smollm2-135m": "smollm2-demo"}


def known(name: str) -> ModelDims | None:
    """A KNOWN hub id or an alias, case-insensitively; also a unique suffix of a hub id."""
    key = ALIASES.get(name.strip().lower(), name.strip()).lower()
    hits = [k for k in KNOWN if k.lower().endswith(key)]  # an exact id is its own suffix
    return KNOWN[hits[0]] if key and len(hits) == 1 else None


def dims_from(name_or_path: str) -> ModelDims:
    """Dims from a local folder or config.json, a known name, or else the hub's config.json."""
    p = Path(name_or_path).expanduser()
    if p.is_dir() and (p / "config.json").is_file():
        return _read_config(p / "config.json", p.name)
    if p.is_file() and p.suffix == ".json":
        return _read_config(p, p.parent.name)
    if (dims := known(name_or_path)) is not None:
        return dims
    if (ms := hub.modelscope_id(name_or_path)) is not None:
        return _read_config(hub.modelscope_download(ms, allow=["config.json"]) / "config.json", ms.split("/")[-1])
    if p.exists() or name_or_path.count("/") != 1:
        raise _unknown(name_or_path, "it is neither a folder with a config.json, a config.json, a known name nor a hub id")
    return _read_config(Path(_hub_config(name_or_path)), name_or_path.split("/")[1])


def _read_config(path: Path, name: str) -> ModelDims:
    try:
        return dims_from_dict(json.loads(path.read_text()), name)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(
            f"Could not read model dimensions from {path} ({type(e).__name__}: {e}); it needs hidden_size, num_hidden_layers, num_attention_heads, intermediate_size and vocab_size."
        ) from None


def dims_from_dict(c: dict, name: str) -> ModelDims:
    """Dims from a config dict (config.json, or a loaded model's `config.to_dict()`)."""
    c = c.get("text_config", c)  # multimodal configs nest the language model's
    heads = c["num_attention_heads"]
    return ModelDims(
        hidden=c["hidden_size"],
        layers=c["num_hidden_layers"],
        heads=heads,
        kv_heads=c.get("num_key_value_heads") or heads,
        ffn=c["intermediate_size"],
        vocab=c["vocab_size"],
        tied_embeddings=bool(c.get("tie_word_embeddings", False)),
        name=name,
        model_type=c.get("model_type", "llama"),
        # Qwen2's q/k/v always have biases; Llama-likes say so in attention_bias.
        attention_bias=bool(c.get("attention_bias", c.get("model_type") == "qwen2")),
        head_dim=c.get("head_dim"),
    )


def _hub_config(repo: str) -> str:
    """config.json from the hub cache, else the hub. Offline this fails at once rather than
    after huggingface_hub's ~25 s of retries, hence the DNS look-up first."""
    from huggingface_hub import hf_hub_download

    try:
        return hf_hub_download(repo, "config.json", local_files_only=hub.offline())  # offline: the cache
    except Exception as e:  # noqa: BLE001 - offline, not found or gated end the same way
        raise _unknown(repo, f"its config.json could not be fetched from the Hugging Face Hub ({type(e).__name__}: offline, or no such public model)") from None


def _unknown(name: str, why: str) -> UserError:
    return UserError(
        f"No model dimensions for '{name}': {why}. Offline, this works for the known models ({', '.join(list(KNOWN) + list(ALIASES))}) and for a local model folder or a path to its config.json."
    )


@dataclass(frozen=True)
class Estimate:
    """Peak memory of one training step, by part, in bytes, and the settings it is for."""

    method: str
    seq_len: int
    batch: int
    checkpointing: bool
    device: str
    trainable: int
    weights: int
    adapter_and_optimizer: int
    activations: int
    logits: int
    overhead: int

    @property
    def total(self) -> int:
        return self.weights + self.adapter_and_optimizer + self.activations + self.logits + self.overhead


def _targets(lora_targets) -> tuple[str, ...]:
    targets = (lora_targets,) if isinstance(lora_targets, str) else tuple(lora_targets)
    targets = tuple(LORA_INPUT) if targets == ("all-linear",) else targets
    if bad := [t for t in targets if t not in LORA_INPUT]:
        raise UserError(f"lora_targets: {', '.join(bad)} is not one of {', '.join(LORA_INPUT)} or all-linear.")
    return targets


def trainable_params(dims: ModelDims, method: str, lora_r: int = 16, lora_targets=("q_proj", "v_proj")) -> int:
    if method == "full":
        return dims.params
    h, q, kv, f = dims.hidden, dims.q_dim, dims.kv_dim, dims.ffn
    shapes = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h), "gate_proj": (h, f), "up_proj": (h, f), "down_proj": (f, h)}
    return dims.layers * sum(lora_r * sum(shapes[t]) for t in _targets(lora_targets))  # A: r x in, B: out x r


def _layer_saved(d: ModelDims, method: str, a: int, targets, r: int, dropout: float, device: str, padded: bool, seq_len: int) -> float:
    """Bytes one decoder layer saves for its backward, per token; `a` bytes per activation."""
    h, q, f = d.hidden, d.q_dim, d.ffn
    kv = q if padded else d.kv_dim  # with a mask SDPA gets k, v repeated to all heads
    n = 2 * (4 * h + 4)  # each RMSNorm keeps its input in fp32, and 1/rms
    n += a * (2 * q + 2 * kv) + 4 * d.heads  # SDPA: q, k, v, output, fp32 log-sum-exp
    n += a * 3 * f  # SiLU input and output, up projection (for the product's backward)
    n += a * seq_len if padded else 0  # the mask, as each layer's own float bias
    if method == "full":  # trained matrices keep their inputs, trained norm weights their outputs
        return n + a * (4 * h + f)  # (o_proj's input is SDPA's output, already counted)
    shared = set()
    for t in targets:
        width = f if t == "down_proj" else h
        n += 4 * r  # lora_A's fp32 output, for lora_B's weight gradient
        if dropout > 0:  # dropped fp32 input + mask: bool in CUDA's fused dropout, fp32 on CPU
            n += width * (4 + (1 if device == "cuda" else 4))
        elif a != 4:  # peft casts a bf16 input to the adapter's fp32: one copy per module
            n += 4 * width
        elif LORA_INPUT[t] != "attn":  # fp32: the input itself, shared (SDPA keeps attn's)
            shared.add((LORA_INPUT[t], width))
    return n + sum(a * w for _, w in shared)


def estimate(
    dims: ModelDims,
    method: str,
    seq_len: int,
    batch: int,
    *,
    lora_r: int = 16,
    lora_targets=("q_proj", "v_proj"),
    lora_dropout: float = 0.05,
    checkpointing: bool = False,
    device: str = "cuda",
    head_on_labels: bool = True,
    labelled_fraction: float = 0.85,
) -> Estimate:
    """Peak memory of one step (forward, backward, AdamW) at this length and batch, by part.
    lora_dropout defaults to thinktune's 0.05 (peft's own default is 0)."""
    if method not in METHODS or device not in ("cuda", "cpu"):
        raise UserError(f"method must be one of {', '.join(METHODS)} and device cuda or cpu, not {method!r} on {device!r}.")
    if method == "qlora" and device == "cpu":
        raise UserError("QLoRA needs CUDA: bitsandbytes' 4-bit (NF4) layers run on NVIDIA GPUs only; on CPU use lora.")
    targets = _targets(lora_targets) if method != "full" else ()
    a = 4 if device == "cpu" else 2  # bytes per activation element
    trainable = trainable_params(dims, method, lora_r, targets)
    # full: gradients + moments (+ fp32 master weights on CUDA); else the adapters' 16 bytes
    optimizer = dims.params * (12 if device == "cpu" else 14) if method == "full" else trainable * 16
    tokens, padded = batch * seq_len, batch > 1
    layer = _layer_saved(dims, method, a, targets, lora_r, lora_dropout, device, padded, seq_len)
    kept = a * dims.hidden if checkpointing else layer  # per layer, while the backward has not reached it
    final = 4 * dims.hidden + 8 * dims.hd + (2 * a * dims.hidden if method == "full" else 0)  # final norm, RoPE
    work = a * (3 * dims.ffn + 2 * dims.hidden)  # a layer's backward temporaries (MLP, residual grads)
    per_token = dims.layers * kept + (layer if checkpointing else 0) + final + work
    activations = tokens * per_token + (tokens * seq_len if padded else 0)  # + the bool mask
    logits = _logits(dims, tokens, a, head_on_labels, labelled_fraction)
    if device == "cuda":
        overhead = CUDA_CONTEXT + CUDA_FRAGMENTATION * (activations + logits)
    else:  # glibc also keeps, with checkpointing, a layer's freed forward temporaries (measured)
        overhead = CPU_BASELINE + CPU_RETAINED * activations + (tokens * layer if checkpointing else 0)
    return Estimate(
        method,
        seq_len,
        batch,
        checkpointing,
        device,
        trainable,
        int(_weights(dims, method, device)),
        int(optimizer),
        int(activations),
        int(logits),
        int(overhead),
    )


def _weights(d: ModelDims, method: str, device: str) -> float:
    if device == "cpu":
        return 4 * d.params
    if method != "qlora":
        return 2 * d.params
    largest = d.hidden * max(d.ffn, d.q_dim)  # dequantised to bf16 for its matmul, one at a time
    return NF4_BYTES * d.linear_params + 2 * (d.params - d.linear_params) + 2 * largest


def _logits(d: ModelDims, tokens: int, a: int, head_on_labels: bool, labelled_fraction: float) -> float:
    if not head_on_labels:
        return 3 * tokens * d.vocab * 4  # fp32 log-softmax output, its gradient, the logits' gradient
    labelled = math.ceil(labelled_fraction * tokens)
    chunk = min(labelled, max(64, HEAD_CHUNK // d.vocab))
    # a chunk's fp32 logits and logsumexp's temporary (+ the bf16 product before .float()),
    # and the labelled hidden states, gathered, and their gradient, kept for the backward
    return chunk * d.vocab * (8 + (2 if a == 2 else 0)) + 2 * labelled * d.hidden * a


@dataclass(frozen=True)
class Fit:
    """The first setting that fits (None if none does), the same at its longest fitting max
    length, and the last one tried (the smallest, for the message when nothing fits)."""

    dims: ModelDims
    budget: int
    device: str
    chosen: Estimate | None
    longest: Estimate | None
    smallest: Estimate
    options: dict = field(default_factory=dict)
    headroom: int = 0  # bytes of the budget kept free: the plan fits budget - headroom

    @property
    def usable(self) -> int:
        return self.budget - self.headroom


def fit(
    dims: ModelDims,
    budget_bytes: int = 8 * GiB,
    device: str = "cuda",
    seq_lens=(4096, 2048, 1024, 512),
    *,
    methods=("lora", "qlora"),
    batches=(4, 2, 1),
    max_len_cap: int = 32768,
    headroom_bytes: int = 0,
    **options,
) -> Fit:
    """The first setting under the budget, giving up, in this order: (1) max length, longest
    first, as reasoning traces cut short lose their answers, and QLoRA trains about as well as
    16-bit LoRA (Dettmers et al. 2023); (2) the method, LoRA before QLoRA, as bf16 weights are
    faster than dequantised NF4; (3) gradient checkpointing, off before on, as on costs a
    third more compute; (4) the batch, 4, 2, 1: gradient accumulation keeps the effective
    batch and long rows keep a GPU busy already. `headroom_bytes` of the budget stay free (a
    card that drives a screen, the allocator's slack); no length above `max_len_cap` is tried.
    `options` go to `estimate`."""
    methods = [m for m in methods if not (m == "qlora" and device == "cpu")]
    if not (methods and seq_lens and batches):
        raise UserError(f"Nothing to try: give at least one method ({'lora or full' if device == 'cpu' else 'lora, qlora or full'}), max length and batch.")
    if any(n > max_len_cap for n in seq_lens):
        raise UserError(f"No max length to try above the cap of {max_len_cap}: {', '.join(str(n) for n in seq_lens if n > max_len_cap)}.")
    usable = budget_bytes - headroom_bytes
    order = itertools.product(sorted(seq_lens, reverse=True), methods, (False, True), sorted(batches, reverse=True))
    for seq_len, method, checkpointing, batch in order:  # the preference order above, one setting at a time
        tried = estimate(dims, method, seq_len, batch, checkpointing=checkpointing, device=device, **options)
        if tried.total <= usable:
            return Fit(dims, budget_bytes, device, tried, _longest(dims, tried, usable, max_len_cap, options), tried, options, headroom_bytes)
    return Fit(dims, budget_bytes, device, None, None, tried, options, headroom_bytes)


def _longest(dims: ModelDims, e: Estimate, budget: int, cap: int, options: dict) -> Estimate:
    """`e`'s method, batch and checkpointing at the longest max length that fits, a multiple of
    64 up to `cap`: a binary search, as memory only grows with the length."""

    def at(units: int) -> Estimate:
        return estimate(dims, e.method, units * 64, e.batch, checkpointing=e.checkpointing, device=e.device, **options)

    if cap // 64 * 64 <= e.seq_len:  # no multiple of 64 above e's length under the cap
        return e
    lo = max(1, e.seq_len // 64)  # lo * 64 fits, as e does
    hi = max(lo, cap // 64)
    if at(hi).total <= budget:
        return at(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if at(mid).total <= budget else (lo, mid)
    return at(lo) if lo * 64 >= e.seq_len else e


def available_ram() -> float:
    """Bytes of RAM available to a new process (MemAvailable), else the machine's total."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return float(line.split()[1]) * 1024
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
