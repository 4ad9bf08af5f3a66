"""loss.py: held-out loss is the mean cross-entropy over every labelled (shifted) position."""

import json
import math

import pytest
import torch

from conftest import SAMPLE, tiny_model
from thinktune.config import DataConfig
from thinktune.data import Collator, prepare
from thinktune.data.encode import IGNORE_INDEX, encode_example
from thinktune.evaluate.loss import heldout_loss


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """The tiny models of this file on one thread (conftest.one_thread)."""


@pytest.fixture(scope="module")
def model():
    return tiny_model("qwen2", 152064, seed=1)


@pytest.fixture(scope="module")
def examples(r1_tokenizer):
    """Five real rows of the bundled sample, cut to a few words each (rows of different lengths)."""
    rows = json.loads(SAMPLE.read_text(encoding="utf-8"))[:5]
    short = [
        {
            "Question": " ".join(r["Question"].split()[: 4 + 3 * i]),
            "Complex_CoT": " ".join(r["Complex_CoT"].split()[: 3 + 5 * i]),
            "Response": " ".join(r["Response"].split()[: 2 + i]),
        }
        for i, r in enumerate(rows)
    ]
    return prepare(DataConfig(path="mem", limit=None, val_fraction=0.0, val_min_rows=0), r1_tokenizer, rows=short).train


@torch.no_grad()
def by_hand(model, examples):
    """Sum over examples and positions t>0 with a label of -log p(label_t | tokens < t), in float64,
    each example alone (no padding), divided by the number of those positions."""
    total, count, means = 0.0, 0, []
    for ex in examples:
        logp = torch.log_softmax(model(torch.tensor([ex["input_ids"]])).logits[0].double(), dim=-1)
        nll = [-logp[t - 1, label].item() for t, label in enumerate(ex["labels"]) if t > 0 and label != IGNORE_INDEX]
        total, count = total + sum(nll), count + len(nll)
        means.append(sum(nll) / len(nll))
    return total / count, count, sum(means) / len(means)


def test_examples_differ_in_length_and_labelled_count(examples):
    lengths = [len(e["input_ids"]) for e in examples]
    labelled = [sum(x != IGNORE_INDEX for x in e["labels"]) for e in examples]
    assert len(examples) == 5 and len(set(lengths)) == 5 and len(set(labelled)) == 5


def test_heldout_loss_is_the_per_token_mean_of_a_hand_computation(model, examples):
    want, count, mean_of_means = by_hand(model, examples)
    got = heldout_loss(model, examples, Collator(pad_id=151643), batch_size=2)
    assert got["tokens"] == count == sum(sum(x != IGNORE_INDEX for x in e["labels"]) for e in examples)
    assert got["loss"] == pytest.approx(want, rel=1e-6)
    assert got["perplexity"] == pytest.approx(math.exp(want), rel=1e-5)
    assert abs(mean_of_means - want) > 1e-3  # a mean of per-row means would be told apart


def test_batch_size_does_not_change_the_value(model, examples):
    collate = Collator(pad_id=151643)
    values = {bs: heldout_loss(model, examples, collate, batch_size=bs) for bs in (1, 2, 3, 5)}
    ref = values[1]["loss"]
    for bs, v in values.items():
        assert v["tokens"] == values[1]["tokens"], bs
        assert v["loss"] == pytest.approx(ref, rel=1e-6, abs=0), bs  # fp32 rounding only (seen: 3e-8)
    # nor the order of the rows
    assert heldout_loss(model, examples[::-1], collate, batch_size=2)["loss"] == pytest.approx(ref, rel=1e-6, abs=0)


def test_the_first_position_is_never_counted_and_prompts_can_be_labelled(model):
    """With the prompt trained too, every position is labelled; the first has nothing before it."""
    exs = [
        encode_example([151646, 151644, 9707], [1879, 13], eos_id=151643, train_on_prompt=True),
        encode_example([151646, 151644, 13048, 11], [1879], eos_id=151643, train_on_prompt=True),
    ]
    got = heldout_loss(model, exs, Collator(pad_id=151643), batch_size=2)
    want, count, _ = by_hand(model, exs)
    assert got["tokens"] == count == (6 - 1) + (6 - 1)
    assert got["loss"] == pytest.approx(want, rel=1e-6)


def test_training_mode_is_restored(model, examples):
    model.train()
    try:
        in_train = heldout_loss(model, examples[:2], Collator(pad_id=151643))
        assert model.training
    finally:
        model.eval()
    in_eval = heldout_loss(model, examples[:2], Collator(pad_id=151643))
    assert not model.training
    assert in_train == in_eval  # measured in eval mode either way


def test_heldout_loss_is_the_models_own_loss(r1_tokenizer, shared_en):
    """The per-token mean (shifted) equals the HF model's loss on a single row."""
    import torch

    from conftest import tiny_model
    from thinktune.config import DataConfig
    from thinktune.data import Collator, prepare
    from thinktune.evaluate.loss import heldout_loss

    rows = prepare(DataConfig(path="en", limit=2, val_fraction=0.0, val_min_rows=0), r1_tokenizer, rows=shared_en).train
    model = tiny_model("qwen2", 152064)
    collate = Collator(r1_tokenizer.pad_token_id)
    with torch.no_grad():
        want = model(**collate(rows[:1])).loss.item()
    assert abs(heldout_loss(model, rows[:1], collate)["loss"] - want) < 1e-5
