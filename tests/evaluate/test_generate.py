"""generate.py: left-padded batched generation, results in input order, stop reasons, seeded sampling.

Every expected output comes from a plain greedy loop (one prompt, no padding, argmax of the
model's own logits), written here independently of `model.generate`."""

import pytest
import torch

from conftest import R1_ASSISTANT, R1_BOS, R1_EOS, R1_THINK, R1_USER, bigram_model, cycling_model, tiny_model
from thinktune.decoding import Decoding
from thinktune.evaluate.generate import generate_all, static_batch
from thinktune.evaluate.loop import EVERY, MIN_TOKENS, period

HELLO, WORLD, HI = 9707, 1879, 13048  # "Hello", " world", "Hi" in the R1 vocabulary
VOCAB = 152064


@torch.no_grad()
def greedy_alone(model, prompt, max_new_tokens, eos=R1_EOS):
    ids, new = list(prompt), []
    for _ in range(max_new_tokens):
        nxt = int(model(torch.tensor([ids]), logits_to_keep=1).logits[0, -1].argmax())
        if nxt == eos:
            return new, "eos"
        ids.append(nxt)
        new.append(nxt)
    return new, "max_new_tokens"


def expected(model, tok, prompt, max_new_tokens):
    new, stop = greedy_alone(model, prompt, max_new_tokens)
    return {"text": tok.decode(new, skip_special_tokens=True), "tokens": len(new), "stop": stop, "forced_close": None}


pytestmark = pytest.mark.usefixtures("exact_generation")  # tokens pinned against a plain fp32 loop (conftest)


@pytest.fixture(scope="module")
def random_model():
    return tiny_model("qwen2", VOCAB, seed=3)


@pytest.fixture(scope="module")
def scripted_model():
    """A conftest.bigram_model wired by hand: after ' world' it writes 'Hello', after 'Hello' it
    stops (eos); after any other token it writes neither 'Hello' nor ' world' nor eos."""
    model = bigram_model(VOCAB)
    with torch.no_grad():
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        emb[:, :3] = 0
        emb[:, 2] = 1  # a constant feature of every token
        emb[HELLO, 0] = 10
        emb[WORLD, 1] = 10
        head[:, :3] = 0
        for t in (R1_EOS, HELLO, WORLD):
            head[t] = 0
            head[t, 2] = -10  # unlikely after any ordinary token
        head[R1_EOS, 0] = 100  # after 'Hello'
        head[HELLO, 1] = 100  # after ' world'
    return model.eval()


PROMPTS = [
    [R1_BOS, R1_USER, HI, HELLO, WORLD, R1_ASSISTANT],
    [R1_BOS, R1_USER, HI],
    [R1_BOS, R1_USER, HELLO, WORLD, HI, HI, HELLO, WORLD, R1_ASSISTANT, R1_THINK],
    [R1_BOS, R1_USER, WORLD, R1_ASSISTANT],
    [R1_BOS, R1_USER, HELLO, HI, WORLD, R1_ASSISTANT, R1_THINK],
]


def test_batched_results_come_back_in_input_order(random_model, r1_tokenizer):
    dec = Decoding(max_new_tokens=6, temperature=0.0, batch_size=2)
    want = [expected(random_model, r1_tokenizer, p, 6) for p in PROMPTS]
    assert len({w["text"] for w in want}) == len(PROMPTS)  # distinct outputs: a mix-up would show
    got, speed = generate_all(random_model, r1_tokenizer, PROMPTS, dec)
    assert got == want
    # the lengths are unsorted, so batches of 2 mix them: lengths 6,3,10,4,7 -> batches [1,3] [0,4] [2]
    assert [len(p) for p in PROMPTS] == [6, 3, 10, 4, 7]
    assert set(speed) == {"seconds", "items_per_second", "tokens_per_second"} and speed["items_per_second"] > 0
    generated = sum(g["tokens"] for g in got)
    assert generated == 30 and speed["tokens_per_second"] == pytest.approx(speed["items_per_second"] * generated / len(PROMPTS), rel=0.01)


def test_static_batch_left_pads_without_changing_the_tokens(random_model, r1_tokenizer):
    dec = Decoding(max_new_tokens=4, temperature=0.0)
    batch = static_batch(random_model, r1_tokenizer, PROMPTS[:3], dec)
    assert batch == [expected(random_model, r1_tokenizer, p, 4) for p in PROMPTS[:3]]
    assert all(r["stop"] == "max_new_tokens" and r["tokens"] == 4 for r in batch)


def test_stop_reasons(scripted_model, r1_tokenizer):
    prompts = [
        [R1_BOS, R1_USER, HI, WORLD],  # ' world' -> 'Hello' -> eos
        [R1_BOS, R1_USER, WORLD, HI],  # an ordinary token: runs to the limit
        [R1_BOS, R1_USER, HI, HI, HELLO],  # 'Hello' -> eos at once
    ]
    assert greedy_alone(scripted_model, prompts[0], 5) == ([HELLO], "eos")  # the model does what it was wired to do
    for batch_size in (1, 3):
        got, _ = generate_all(scripted_model, r1_tokenizer, prompts, Decoding(max_new_tokens=5, temperature=0.0, batch_size=batch_size))
        assert got[0] == {"text": "Hello", "tokens": 1, "stop": "eos", "forced_close": None}
        assert got[1]["stop"] == "max_new_tokens" and got[1]["tokens"] == 5
        assert got[1] == expected(scripted_model, r1_tokenizer, prompts[1], 5)
        assert got[2] == {"text": "", "tokens": 0, "stop": "eos", "forced_close": None}


@pytest.fixture(scope="module")
def looping_model():
    """'Hi' -> 'Hello' -> ' world' -> 'Hi' -> ... for ever (conftest.cycling_model)."""
    return cycling_model(VOCAB, (HI, HELLO, WORLD))


def test_a_looping_row_is_stopped_where_the_rule_first_sees_the_loop(looping_model, r1_tokenizer):
    """The engine stops a looping row (stop "loop") at the first check that sees three repeats
    over MIN_TOKENS tokens, keeping its tokens so far; with the rule off it runs to the limit."""
    prompt = [R1_BOS, R1_USER, WORLD, R1_ASSISTANT, HELLO, WORLD]
    alone, stop = greedy_alone(looping_model, prompt, 120)
    assert stop == "max_new_tokens" and alone[:4] == [HI, HELLO, WORLD, HI] and period(alone) == 3
    assert MIN_TOKENS % EVERY == 0  # so the first check that can see the loop is at MIN_TOKENS tokens
    other = [R1_BOS, R1_USER, HI, WORLD]  # ' world' -> 'Hi': loops too, one step behind
    on, _ = generate_all(looping_model, r1_tokenizer, [prompt, other], Decoding(max_new_tokens=120, temperature=0.0, batch_size=2))
    off, _ = generate_all(looping_model, r1_tokenizer, [prompt], Decoding(max_new_tokens=120, temperature=0.0, stop_loops=False))
    assert [r["stop"] for r in on] == ["loop", "loop"] and [r["tokens"] for r in on] == [MIN_TOKENS, MIN_TOKENS]
    assert on[0]["text"] == r1_tokenizer.decode(alone[:MIN_TOKENS], skip_special_tokens=True)
    assert off[0] == expected(looping_model, r1_tokenizer, prompt, 120) and off[0]["stop"] == "max_new_tokens"


def test_greedy_is_deterministic_and_ignores_the_seed(random_model, r1_tokenizer):
    first, _ = generate_all(random_model, r1_tokenizer, PROMPTS, Decoding(max_new_tokens=5, temperature=0.0, batch_size=3, seed=1))
    torch.manual_seed(12345)  # the global generator does not matter to greedy decoding
    again, _ = generate_all(random_model, r1_tokenizer, PROMPTS, Decoding(max_new_tokens=5, temperature=0.0, batch_size=3, seed=2))
    assert first == again


def test_sampling_follows_the_seed(random_model, r1_tokenizer):
    def sample(seed):
        dec = Decoding(max_new_tokens=5, temperature=1.0, top_p=1.0, batch_size=5, seed=seed)
        return [r["text"] for r in generate_all(random_model, r1_tokenizer, PROMPTS, dec)[0]]

    a = sample(7)
    torch.manual_seed(999)  # generate_all seeds the generator itself
    assert sample(7) == a
    assert sample(8) != a
    greedy = [r["text"] for r in generate_all(random_model, r1_tokenizer, PROMPTS, Decoding(max_new_tokens=5, temperature=0.0, batch_size=5))[0]]
    assert a != greedy


def test_no_prompts(random_model, r1_tokenizer):
    results, speed = generate_all(random_model, r1_tokenizer, [], Decoding(temperature=0.0))
    assert results == [] and speed["items_per_second"] == 0 and speed["tokens_per_second"] == 0
