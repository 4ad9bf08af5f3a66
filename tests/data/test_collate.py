"""Padding: per batch, masked by position (pad = eos keeps the real eos trained)."""

import pytest
import torch

from conftest import R1_EOS, tiny_model
from thinktune.config import DataConfig
from thinktune.data import Collator
from thinktune.data.encode import IGNORE_INDEX
from thinktune.data.pipeline import prepare


def test_pad_equals_eos_masks_by_position_not_id(r1_tokenizer):
    """Defect 1: pad = eos in the R1 tokenizer; pads get -100, the real end token keeps its label."""
    assert r1_tokenizer.pad_token_id == r1_tokenizer.eos_token_id == R1_EOS
    short = {"input_ids": [5, 6, 7, R1_EOS], "labels": [IGNORE_INDEX, 6, 7, R1_EOS]}
    long = {"input_ids": [5, 6, 7, 8, 9, 10, R1_EOS], "labels": [IGNORE_INDEX, 6, 7, 8, 9, 10, R1_EOS]}
    batch = Collator(r1_tokenizer.pad_token_id)([short, long])
    assert batch["input_ids"].tolist()[0] == [5, 6, 7, R1_EOS, R1_EOS, R1_EOS, R1_EOS]
    assert batch["labels"].tolist() == [
        [IGNORE_INDEX, 6, 7, R1_EOS, IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX],
        [IGNORE_INDEX, 6, 7, 8, 9, 10, R1_EOS],
    ]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 0, 0, 0], [1] * 7]


def test_pads_per_batch_not_to_512():
    """Defect 6: the batch is as long as its longest row."""
    rows = [{"input_ids": [1] * n, "labels": [1] * n} for n in (3, 9, 5)]
    assert Collator(0)(rows)["input_ids"].shape == (3, 9)
    assert Collator(0, pad_to_multiple_of=8)(rows)["input_ids"].shape == (3, 16)


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_loss_ignores_whatever_the_pads_hold(r1_tokenizer, shared_en, arch):
    """On tiny Qwen2 and Llama models with the real tokenizer: the loss of a padded batch equals the mean of the
    per-row losses weighted by labelled tokens, and does not change if pad ids are replaced."""
    cfg = DataConfig(path="en", limit=3, val_fraction=0.0, val_min_rows=0)
    rows = prepare(cfg, r1_tokenizer, rows=shared_en).train
    model = tiny_model(arch, 152064)
    batch = Collator(R1_EOS)(rows)
    with torch.no_grad():
        loss = model(**batch).loss.item()
        sums, counts = 0.0, 0
        for r in rows:
            one = Collator(R1_EOS)([r])
            n = int((one["labels"][:, 1:] != IGNORE_INDEX).sum())
            sums += model(**one).loss.item() * n
            counts += n
        other = dict(batch)
        other["input_ids"] = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, 12345)
        loss_other = model(**other).loss.item()
    assert abs(loss - sums / counts) < 1e-4
    assert abs(loss - loss_other) < 1e-5
