"""Held-out loss: mean cross-entropy per labelled token, the same rendering and masking as training."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..data.encode import IGNORE_INDEX


@torch.no_grad()
def heldout_loss(model, examples: list[dict], collator, batch_size: int = 2) -> dict:
    """Mean per-token loss over every labelled position of `examples` (not a mean of batch
    means, so the number does not depend on the batch size or on how rows were grouped)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        batch = collator([examples[i] for i in order[start : start + batch_size]])
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        # Labels are aligned with inputs; position t predicts token t+1.
        shift_logits = logits[:, :-1].float()
        shift_labels = batch["labels"][:, 1:]
        total += F.cross_entropy(
            shift_logits.reshape(-1, shift_logits.size(-1)),
            shift_labels.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        ).item()
        count += int((shift_labels != IGNORE_INDEX).sum())
    if was_training:
        model.train()
    loss = total / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50)), "tokens": count}
