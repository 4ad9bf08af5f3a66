"""The language-model head and its cross-entropy on labelled positions only, in chunks.

A causal LM's forward computes logits for every position, prompt and pad included, and keeps
them for the backward: for a 152k-token vocabulary that is ~0.6 GB of fp32 per 1,000 positions,
more than the whole LoRA model needs elsewhere. Training only needs the rows of the head whose
next token carries a label. `Loss("head_on_labels")` asks the model for its last hidden states
and the logits of one position only, and `linear_cross_entropy` computes the head, the loss and
its gradient chunk by chunk, so at most `chunk` positions of logits exist at a time. On CUDA, Liger-Kernel's fused linear cross-entropy (the Trainer's
`use_liger_kernel`) is the ecosystem's piece for the same thing and is used when installed.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch
from torch import nn

from .data.encode import IGNORE_INDEX
from .model import half_dtype

# Model types whose forward ends in `logits = lm_head(hidden)` with nothing after it (no logit
# soft-capping or scaling), so skipping the head and applying it here gives the same loss.
PLAIN_HEADS = {"llama", "qwen2", "qwen3", "mistral"}
CHUNK_ELEMENTS = 1 << 25  # logits per chunk (positions x vocabulary): 128 MiB in fp32


class _LinearCrossEntropy(torch.autograd.Function):
    """sum_i CE(hidden_i @ weight.T, target_i), with the gradient computed in the forward, chunk
    by chunk, so no full logit matrix is ever stored (the idea of Liger's fused kernel)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk: int):
        acc = torch.promote_types(hidden.dtype, torch.float32)  # fp32 at least: bf16 logits lose the loss
        total = torch.zeros((), dtype=acc, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if hidden.requires_grad else None
        grad_weight = torch.zeros_like(weight, dtype=acc) if weight.requires_grad else None
        for start in range(0, hidden.shape[0], chunk):
            h, t = hidden[start : start + chunk], targets[start : start + chunk]
            logits = (h @ weight.T).to(acc)
            lse = torch.logsumexp(logits, dim=-1)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            # d(sum CE)/d(logits) = softmax - one_hot(target), computed in place over the logits
            grad = logits.sub_(lse[:, None]).exp_()
            grad[torch.arange(len(t), device=t.device), t] -= 1.0
            grad = grad.to(h.dtype)
            if grad_hidden is not None:
                grad_hidden[start : start + chunk] = grad @ weight
            if grad_weight is not None:
                grad_weight += grad.T.to(acc) @ h.to(acc)
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.weight_dtype = weight.dtype
        return total

    @staticmethod
    def backward(ctx, grad_out):
        grad_hidden, grad_weight = ctx.saved_tensors
        gh = grad_hidden * grad_out.to(grad_hidden.dtype) if grad_hidden is not None else None
        gw = (grad_weight * grad_out).to(ctx.weight_dtype) if grad_weight is not None else None
        return gh, gw, None, None


def linear_cross_entropy(hidden, weight, labels, num_items_in_batch=None, chunk: int | None = None):
    """The HF causal-LM loss (labels aligned with inputs, shifted here once) computed from hidden
    states: sum of CE over labelled positions / num_items_in_batch (or their count).

    >>> _ = torch.manual_seed(0); h = torch.randn(1, 4, 8); w = torch.randn(11, 8)
    >>> labels = torch.tensor([[-100, 3, 5, -100]])
    >>> plain = nn.functional.cross_entropy((h @ w.T)[0, :-1], labels[0, 1:], ignore_index=-100)
    >>> bool(torch.allclose(linear_cross_entropy(h, w, labels, chunk=1), plain))
    True
    """
    h, t = hidden[:, :-1], labels[:, 1:]
    keep = t != IGNORE_INDEX
    h, t = h[keep], t[keep]
    chunk = chunk or max(64, CHUNK_ELEMENTS // weight.shape[0])
    total = _LinearCrossEntropy.apply(h, weight, t.to(h.device), chunk)
    denom = num_items_in_batch if num_items_in_batch is not None else max(int(keep.sum()), 1)
    if torch.is_tensor(denom):
        denom = denom.to(total.device)
    return total / denom


def causal_mask_suffices(model) -> bool:
    """True when a right-padded batch may run without its padding mask, on the causal mask alone.

    With pads only after a row's last token, causal attention never lets a real token see a pad,
    and position ids counted from 0 are already right: every labelled position gets the same
    logits (tests/test_speed.py). Without a padding mask, sdpa takes its causal kernel, which
    skips the masked half of the scores (measured here: ~12% faster for padded pairs of rows).
    Only for model types whose forward uses the mask for attention alone (PLAIN_HEADS), and not
    for flash-attention 2, which uses the mask to drop the pads from the work altogether.
    """
    base = base_model(model)
    return base.config.model_type in PLAIN_HEADS and base.config._attn_implementation in ("sdpa", "eager")


def base_model(model):
    """The transformers model inside a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@dataclass
class Loss:
    """How a run computes its training loss, chosen once (`choose_loss`) and shown to the user.

    - `plain`: the model's own forward and loss (logits for every position).
    - `head_on_labels`: the model is asked for its last hidden states (`output_hidden_states=-1`)
      and logits of one position only (`logits_to_keep=1`); `linear_cross_entropy` applies the
      head to labelled positions, chunk by chunk. Same loss, a fraction of the logit memory.
    - `liger`: on CUDA with liger-kernel installed, the Trainer's `use_liger_kernel`.
    `causal_only`: right-padded batches run without their padding mask (`causal_mask_suffices`).
    `half`: the run's bf16/fp16 compute type. accelerate hands the Trainer the model's outputs
    converted to fp32 and the loss runs outside its autocast, so without this the head's matrix
    products would run in fp32 (on a bf16 CPU at half the rate, issue 18's profile) or, with
    half-precision weights, fail on mixed dtypes; the model's own head runs under autocast too.
    """

    kind: str = "plain"
    head: nn.Linear | None = None
    causal_only: bool = False
    chunk: int | None = None
    half: torch.dtype | None = None

    def model_inputs(self, inputs: dict) -> dict:
        """The keyword arguments the model's forward gets for this strategy."""
        mask = inputs.get("attention_mask")
        if self.causal_only and mask is not None and mask.dim() == 2:
            inputs = {k: v for k, v in inputs.items() if k != "attention_mask"}
        if self.kind == "head_on_labels":
            inputs = {**inputs, "output_hidden_states": -1, "logits_to_keep": 1}
        return inputs

    def __call__(self, outputs, labels, num_items_in_batch=None):
        """The Trainer's `compute_loss_func` for head_on_labels."""
        assert self.head is not None
        hidden = outputs.hidden_states[-1]
        if self.half is None:  # not autocast(enabled=False): that would switch off an autocast around us
            return linear_cross_entropy(hidden, self.head.weight, labels, num_items_in_batch, self.chunk)
        with torch.autocast(hidden.device.type, dtype=self.half):
            return linear_cross_entropy(hidden, self.head.weight, labels, num_items_in_batch, self.chunk)


def head_on_labels_blocker(model) -> str | None:
    """None when the loss may be computed from the hidden states, else the reason it cannot."""
    base = base_model(model)
    head = base.get_output_embeddings()
    if base.config.model_type not in PLAIN_HEADS:
        return f"model type {base.config.model_type!r} may transform its logits after the head"
    if type(head) is not nn.Linear or head.bias is not None:
        return "the output head is not a plain bias-free Linear (e.g. LoRA on lm_head)"
    return None


def choose_loss(model, head_on_labels: bool, packing: bool, device: str, distributed: str, precision: str = "fp32") -> tuple[Loss, str | None]:
    """The loss strategy of a run, and a note for the user when head_on_labels had to be off."""
    causal_only = not packing and causal_mask_suffices(model)
    if not head_on_labels:
        return Loss("plain", causal_only=causal_only), None
    if device == "cuda" and importlib.util.find_spec("liger_kernel") is not None:
        return Loss("liger", causal_only=causal_only), None  # Liger's fused linear cross-entropy: the same idea as a Triton kernel
    why = head_on_labels_blocker(model)
    if why is None and distributed in ("FSDP", "DEEPSPEED"):
        why = "FSDP/DeepSpeed shard the head's weight"
    if why:
        return Loss("plain", causal_only=causal_only), f"train.head_on_labels is off for this run: {why}."
    half = half_dtype(precision)
    return Loss("head_on_labels", base_model(model).get_output_embeddings(), causal_only, half=half), None
