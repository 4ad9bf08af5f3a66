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


class PackingCollator:
    """Packs a batch into one row with no padding: rows concatenated, position ids restarting at 0
    for each, and attention kept inside each row.

    Position ids alone are not enough (issue 4): with transformers 5.24's `sdpa` or `eager`
    attention, a packed row then attends across its examples whenever the forward builds a
    cache, and FlexAttention has no backward on CPU. So for those this builds the block-diagonal
    causal mask explicitly (4D, used by the model as given); `flash_attention_2` gets position ids
    only, which is its variable-length path. The first token of every example is unlabelled so
    no example is trained to predict the next one's start.

    >>> c = PackingCollator(pad_id=0, attention="sdpa")
    >>> b = c([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8, 9], "labels": [8, 9]}])
    >>> b["input_ids"].tolist(), b["labels"].tolist(), b["position_ids"].tolist()
    ([[5, 6, 7, 8, 9]], [[-100, 6, 7, -100, 9]], [[0, 1, 2, 0, 1]])
    >>> b["attention_mask"][0, 0].int().tolist()
    [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 1, 1]]
    """

    def __init__(self, pad_id: int, attention: str = "sdpa"):
        self.pad_id, self.attention = pad_id, attention

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        ids = torch.tensor([t for e in examples for t in e["input_ids"]], dtype=torch.long)[None]
        labels = torch.tensor([t for e in examples for t in e["labels"]], dtype=torch.long)[None]
        lengths = [len(e["input_ids"]) for e in examples]
        starts = torch.tensor([0] + lengths[:-1]).cumsum(0)
        labels[0, starts] = IGNORE_INDEX
        position_ids = torch.cat([torch.arange(n) for n in lengths])[None]
        batch = {"input_ids": ids, "labels": labels, "position_ids": position_ids}
        if self.attention == "flash_attention_2":
            return batch
        row = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
        mask = (row[:, None] == row[None, :]) & torch.ones(len(row), len(row), dtype=torch.bool).tril()
        if self.attention == "eager":  # eager adds the mask to the scores: 0 or -inf, not True/False
            mask = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
        batch["attention_mask"] = mask[None, None]
        return batch
