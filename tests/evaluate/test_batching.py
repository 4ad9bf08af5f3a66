"""batching.py: continuous batching gives each row the tokens a plain greedy loop gives it alone,
while rows join, leave, and the cache is cut and grown; repetition penalty as transformers applies
it; which models it runs; how many rows fit in memory."""

import pytest
import torch

from conftest import R1_ASSISTANT, R1_BOS, R1_USER, tiny_model
from thinktune.decoding import Decoding
from thinktune.evaluate import batching
from thinktune.evaluate.batching import Engine, Row, Slots, fit_slots, packed_linears, supported
from thinktune.evaluate.generate import generate_all, static_batch
from thinktune.model import CPU_BF16_SWITCH

VOCAB = 152064


pytestmark = pytest.mark.usefixtures("exact_generation")  # tokens pinned against a plain fp32 loop (conftest)


@pytest.fixture(scope="module")
def model():
    return tiny_model("qwen2", VOCAB, seed=11)


@torch.no_grad()
def alone(model, prompt, n):
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(model(torch.tensor([ids]), logits_to_keep=1).logits[0, -1].argmax()))
    return ids[len(prompt) :]


PROMPTS = [[R1_BOS, R1_USER] + [100 + 7 * i + j for j in range(3 + 5 * i % 11)] + [R1_ASSISTANT] for i in range(7)]


def test_rows_joining_and_leaving_through_cuts_and_growth_get_the_tokens_they_get_alone(model, r1_tokenizer, monkeypatch):
    """7 prompts of 5 to 15 tokens, 3 slots, 100 new tokens each: every slot is refilled twice,
    the cache runs out of columns, is cut and grown; each row still gets exactly its own tokens."""
    seen = []
    make_room = Slots.make_room

    def watch(self):
        if self.cache is not None and self.length >= self.capacity:
            seen.append((self.length, self.capacity, min(r.start for r in self.rows)))
        make_room(self)

    monkeypatch.setattr(Slots, "make_room", watch)
    rows = [Row(i, p) for i, p in enumerate(PROMPTS)]
    finished = []
    dec = Decoding(max_new_tokens=100, temperature=0.0, top_p=1.0, batch_size=3, stop_loops=False)  # pinned against a loop that runs on
    Engine(model, r1_tokenizer, dec).run(rows, finished.append)
    assert [r.out for r in rows] == [alone(model, p, 100) for p in PROMPTS]
    assert all(r.stop == "max_new_tokens" for r in rows) and sorted(r.index for r in finished) == list(range(7))
    assert len(seen) >= 2 and any(start > 0 for *_, start in seen)  # full twice, with dead columns to cut


def test_continuous_and_static_batches_agree(model, r1_tokenizer):
    dec = Decoding(max_new_tokens=12, temperature=0.0, top_p=1.0, batch_size=4)
    got, _ = generate_all(model, r1_tokenizer, PROMPTS, dec)
    assert got == static_batch(model, r1_tokenizer, PROMPTS, dec)


def test_repetition_penalty_is_transformers_own(r1_tokenizer):
    """Each row's own tokens (prompt and output) penalised as `generate` does for one unpadded prompt."""
    model = tiny_model("llama", VOCAB, seed=2)  # tied embeddings: it repeats itself, which the penalty breaks
    dec = Decoding(max_new_tokens=20, temperature=0.0, top_p=1.0, repetition_penalty=1.8, batch_size=3)
    got, _ = generate_all(model, r1_tokenizer, PROMPTS[:3], dec)
    for prompt, g in zip(PROMPTS[:3], got):
        assert g == static_batch(model, r1_tokenizer, [prompt], dec)[0]
    plain, _ = generate_all(model, r1_tokenizer, PROMPTS[:3], Decoding(**{**dec.to_dict(), "repetition_penalty": 1.0}))
    assert plain != got  # the penalty changed something


def test_only_plain_attention_models_run_here():
    from transformers import MistralConfig, MistralForCausalLM

    assert supported(tiny_model("qwen2", 64)) and supported(tiny_model("llama", 64))
    windowed = MistralForCausalLM(
        MistralConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2, sliding_window=8)
    )
    assert not supported(windowed)


def test_rows_are_limited_to_what_fits_in_memory(model, monkeypatch):
    per_row = 2 * 2 * 2 * 8 * 100 * 4  # layers x (keys, values) x kv heads x head dim x columns x fp32 bytes
    monkeypatch.setattr(batching, "_available_ram", lambda: int(10.5 * per_row / 0.7))
    assert fit_slots(model, 32, 100) == 10
    assert fit_slots(model, 4, 100) == 4
    monkeypatch.setattr(batching, "_available_ram", lambda: 0)
    assert fit_slots(model, 32, 100) == 1


def test_grouped_attention_switch_is_set_for_the_run_only(monkeypatch):
    monkeypatch.delenv(batching.GQA_SWITCH, raising=False)
    with batching.grouped_attention("cpu"):
        assert batching.os.environ[batching.GQA_SWITCH] == "1"
    assert batching.GQA_SWITCH not in batching.os.environ
    with batching.grouped_attention("cuda"):
        assert batching.GQA_SWITCH not in batching.os.environ


def test_linear_layers_are_packed_for_the_run_only_and_agree_to_fp32_rounding(model, monkeypatch):
    """fp32 on a CPU: every linear layer computes from a oneDNN-packed weight inside the run, the
    logits agree with the plain layers' to fp32 rounding, and the layers are plain again after."""
    ids = torch.tensor([PROMPTS[3], PROMPTS[3][::-1]])
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        plain = model(ids).logits
        with packed_linears(model, 2):
            assert all("forward" in m.__dict__ for m in linears)  # the instance's own forward: packed
            packed = model(ids).logits
    assert all("forward" not in m.__dict__ for m in linears)
    torch.testing.assert_close(packed, plain, rtol=1e-4, atol=1e-5)
    monkeypatch.setattr(batching, "_available_ram", lambda: 4 * sum(m.weight.numel() * 4 for m in linears) - 1)
    with packed_linears(model, 2):  # the packed copies would take more than a quarter of the free memory
        assert all("forward" not in m.__dict__ for m in linears)
    monkeypatch.undo()
    monkeypatch.setenv(CPU_BF16_SWITCH, "native")  # bf16 autocast would not reach packed layers: none are packed
    with packed_linears(model, 2):
        assert all("forward" not in m.__dict__ for m in linears)
