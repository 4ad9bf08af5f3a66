"""Stage 5, collate: pad each batch to its own longest row; pads are masked by position."""

from __future__ import annotations

import torch

from .encode import IGNORE_INDEX


class Collator:
    """Right-pads a list of encoded examples into tensors.

    Padding is per batch (never to a fixed 512). Pad positions get attention_mask 0 and label
    IGNORE_INDEX because of where they are, not what id they hold: with pad = eos (the R1
    distills' setting), masking by id would also hide the real end token and the model would
    never learn to stop (huggingface/trl#1623, unslothai/unsloth#416).
    """

    def __init__(self, pad_id: int, pad_to_multiple_of: int | None = None):
        self.pad_id = pad_id
        self.multiple = pad_to_multiple_of

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        n = max(len(e["input_ids"]) for e in examples)
        if self.multiple:
            n = -(-n // self.multiple) * self.multiple
        batch = len(examples)
        input_ids = torch.full((batch, n), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((batch, n), dtype=torch.long)
        labels = torch.full((batch, n), IGNORE_INDEX, dtype=torch.long)
        for i, e in enumerate(examples):
            length = len(e["input_ids"])
            input_ids[i, :length] = torch.tensor(e["input_ids"])
            attention_mask[i, :length] = 1
            labels[i, :length] = torch.tensor(e["labels"])
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
