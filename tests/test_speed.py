"""Issue 4's levers, each against the plain path it replaces: the head and loss on labelled
positions only (loss and gradients), packing with a block-diagonal mask (logits and loss per
example), and both through the real Trainer (same adapter)."""

import doctest

import pytest
import torch

from conftest import run_tiny, tiny_config, tiny_model
from thinktune import speed
from thinktune.data import Collator, PackingCollator
from thinktune.data import collate as collate_mod
from thinktune.data.encode import IGNORE_INDEX
from thinktune.speed import Loss, choose_loss, head_on_labels_blocker, linear_cross_entropy


def test_docstring_examples_run():
    for mod in (speed, collate_mod):
        result = doctest.testmod(mod)
        assert result.attempted > 0 and result.failed == 0, mod.__name__


def rows(vocab, lengths, seed=0, prompt=3):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(4, vocab, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * prompt + ids[prompt:]})
    return out


def lora(model):
    from thinktune.config import LoraConfig
    from thinktune.model import add_lora

    peft = add_lora(model, LoraConfig(dropout=0.0))
    for n, p in peft.named_parameters():  # B starts at zero: move it so gradients reach A too
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.02, generator=torch.Generator().manual_seed(len(n)))
    return peft.train()


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


# Each lever is checked in fp32 (exact to rounding) and under bf16 autocast, the CPU path that
# model.precision=auto takes on CPUs with native bf16 (issue 11). bf16 keeps 8 bits of mantissa:
# its tolerances are ~0.5% of a value, still far below what a leaking mask (~0.3 of a logit here)
# or a wrong loss scale (x2) moves.
PRECISIONS = ["fp32", "bf16"]
TOL = {"fp32": dict(rtol=1e-5, atol=1e-5), "bf16": dict(rtol=1e-2, atol=2e-2)}
LOSS_REL = {"fp32": 1e-5, "bf16": 1e-2}


def autocast(precision):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")


@pytest.mark.parametrize("arch", ["qwen2", "llama"])  # untied head, tied head
@pytest.mark.parametrize("chunk", [None, 5])  # one chunk, and many uneven ones
@pytest.mark.parametrize("precision", PRECISIONS)
def test_head_on_labels_gives_the_plain_loss_and_gradients(arch, chunk, precision):
    model = lora(tiny_model(arch, 97, seed=1))
    batch = Collator(0)(rows(97, [23, 9, 17]))  # padded rows: pads unlabelled
    n_items = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
    with autocast(precision):
        plain = model(**batch, num_items_in_batch=n_items).loss
    plain.backward()
    want = grads(model)
    model.zero_grad()
    loss_path, note = choose_loss(model, head_on_labels=True, packing=False, device="cpu", distributed="NO")
    assert note is None and loss_path.kind == "head_on_labels" and head_on_labels_blocker(model) is None
    assert loss_path.causal_only and "attention_mask" not in loss_path.model_inputs(batch)  # right-padded: the causal mask suffices
    loss_path.chunk, loss_path.causal_only = chunk, False  # the head alone here; the mask's equivalence is tested below
    labels = batch.pop("labels")
    with autocast(precision):
        out = model(**loss_path.model_inputs(batch))
        assert out.logits.shape[1] == 1  # logits of one position only: no vocabulary-wide logits were made
        loss = loss_path(out, labels, n_items)
    loss.backward()
    assert float(loss) == pytest.approx(float(plain), rel=1e-6 if precision == "fp32" else LOSS_REL[precision])
    got = grads(model)
    assert want.keys() == got.keys() and len(got) == 2 * 2 * 2  # 2 layers x q,v x A,B
    # gradients of ~1e-3: bf16 rounding of the activations shows in their third digit
    tol = dict(rtol=1e-5, atol=1e-7) if precision == "fp32" else dict(rtol=2e-2, atol=2e-4)
    for k in want:
        torch.testing.assert_close(got[k], want[k], **tol)


def test_head_weight_gradient_for_a_trainable_head():
    torch.manual_seed(0)
    h = torch.randn(2, 7, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 50, (2, 7))
    labels[0, :3] = IGNORE_INDEX
    ref = torch.nn.functional.cross_entropy((h @ w.T)[:, :-1].reshape(-1, 50), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum") / 4
    ref.backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    ours = linear_cross_entropy(h, w, labels, num_items_in_batch=4, chunk=3)
    ours.backward()
    assert float(ours) == pytest.approx(float(ref), rel=1e-12)
    torch.testing.assert_close(h.grad, gh, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w.grad, gw, rtol=1e-10, atol=1e-12)


def test_head_on_labels_refuses_heads_it_cannot_replace():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    gemma = Gemma2ForCausalLM(
        Gemma2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=8)
    )
    assert "may transform its logits" in head_on_labels_blocker(gemma)  # final logit soft-capping
    loss_path, note = choose_loss(gemma, head_on_labels=True, packing=False, device="cpu", distributed="NO")
    assert loss_path == Loss("plain") and note.startswith("train.head_on_labels is off for this run: model type 'gemma2'")


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_packed_examples_see_only_themselves(arch, attention, precision):
    model = tiny_model(arch, 97, seed=2)
    model.config._attn_implementation = attention
    examples = rows(97, [11, 6, 15], seed=3)
    packed = PackingCollator(0, attention)(examples)
    assert packed["input_ids"].shape == (1, 32) and "attention_mask" in packed
    with torch.no_grad(), autocast(precision):
        logits = model(input_ids=packed["input_ids"], attention_mask=packed["attention_mask"], position_ids=packed["position_ids"]).logits[0].float()
        start = 0
        for e in examples:
            alone = model(input_ids=torch.tensor([e["input_ids"]])).logits[0].float()
            torch.testing.assert_close(logits[start : start + len(alone)], alone, **TOL[precision])
            start += len(alone)
    # the loss of the packed row is the token-weighted loss of the rows one by one
    n = sum(sum(x != IGNORE_INDEX for x in e["labels"][1:]) for e in examples)
    with torch.no_grad(), autocast(precision):
        packed_loss = model(**packed, num_items_in_batch=n).loss
        each = sum(model(**Collator(0)([e]), num_items_in_batch=n).loss for e in examples)
    assert float(packed_loss) == pytest.approx(float(each), rel=LOSS_REL[precision])


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("precision", PRECISIONS)
def test_right_padded_rows_need_no_padding_mask(arch, attention, precision):
    """causal_mask_suffices: a right-padded batch without its mask gives every real position
    the logits it has with the mask, and the logits of its row run alone."""
    model = tiny_model(arch, 97, seed=4)
    model.config._attn_implementation = attention
    assert speed.causal_mask_suffices(model)
    examples = rows(97, [13, 5, 9], seed=5)
    batch = Collator(0)(examples)
    assert int(batch["attention_mask"].sum()) == 27 and batch["input_ids"].shape == (3, 13)
    with torch.no_grad(), autocast(precision):
        masked = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
        causal = model(input_ids=batch["input_ids"]).logits.float()
        for i, e in enumerate(examples):
            n = len(e["input_ids"])
            alone = model(input_ids=torch.tensor([e["input_ids"]])).logits[0].float()
            torch.testing.assert_close(causal[i, :n], masked[i, :n], **TOL[precision])
            torch.testing.assert_close(causal[i, :n], alone, **TOL[precision])
    model.config._attn_implementation = "flash_attention_2"  # it unpads with the mask: keep it
    assert not speed.causal_mask_suffices(model)


def test_the_trap_position_ids_alone_leak_across_examples():
    """Why the mask is explicit: transformers 5.24 with sdpa and its default cache lets the second
    packed example attend to the first when only position ids mark the boundary."""
    model = tiny_model("qwen2", 97, seed=2)
    examples = rows(97, [11, 6], seed=3)
    packed = PackingCollator(0, "sdpa")(examples)
    with torch.no_grad():
        leaky = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"]).logits[0, 11:]
        alone = model(input_ids=torch.tensor([examples[1]["input_ids"]])).logits[0]
    assert float((leaky - alone).abs().max()) > 1e-3


@pytest.fixture(scope="module")
def tiny_dir(tiny_qwen2_dir):
    return tiny_qwen2_dir


def test_levers_through_the_trainer_give_the_same_adapter(tmp_path, tiny_dir, short_sample):
    base, plain = run_tiny(tmp_path, tiny_dir, short_sample, "plain", "train.head_on_labels=false", "train.packing=false")
    # plain: on CPU each of a batch's 3 rows is run on its own (rows_per_pass null -> 1)
    assert base["rows_per_pass"] == 1 and base["effective_batch"] == 6
    levers = (
        ["train.head_on_labels=true"],
        ["train.head_on_labels=false", "train.packing=true"],
        ["train.packing=true"],
        ["train.rows_per_pass=3"],
        ["train.rows_per_pass=3", "train.head_on_labels=false"],
    )
    for sets in levers:
        s, adapter = run_tiny(tmp_path, tiny_dir, short_sample, "_".join(x.split("=")[0][6:] + x[-4:] for x in sets), *sets)
        assert s["tokens_trained"] == base["tokens_trained"] and s["optimizer_steps"] == base["optimizer_steps"] == 2
        assert s["eval_loss_end"] == pytest.approx(base["eval_loss_end"], rel=1e-6), sets
        # every lever sums in another order (6 accumulated passes, chunks, packed or padded rows);
        # AdamW's g/sqrt(v) turns that fp32 rounding into up to ~1e-5 of a weight after two steps
        # at lr 1e-2 (seen: 6e-6 for head_on_labels), where a step moves a weight by up to 1e-2
        # and a wrong loss scale or a leaking mask moves it by > 1e-3
        tol = 5e-5
        assert max(float((adapter[k] - plain[k]).abs().max()) for k in plain) < tol, sets
    assert max(float(t.abs().max()) for k, t in plain.items() if "lora_B" in k) > 1e-3  # it did train


@pytest.mark.parametrize("arch", ["qwen2", "llama"])  # untied head, tied head
def test_bf16_frozen_weights_give_the_fp32_loss_and_gradients_within_bf16_tolerance(arch):
    """Issue 18's lever: frozen base weights stored in bf16 (model.cpu_bf16_weights) under bf16
    autocast, LoRA weights fp32, against the same model and adapter in fp32 throughout."""
    from thinktune.model import weight_dtype

    ref = lora(tiny_model(arch, 97, seed=4))
    half = lora(tiny_model(arch, 97, seed=4).to(weight_dtype("bf16", "cpu", cpu_bf16_weights=True)))
    half.load_state_dict(ref.state_dict())  # the same adapter (B moved off zero), the weights rounded to bf16
    frozen = {p.dtype for p in half.parameters() if not p.requires_grad}
    assert frozen == {torch.bfloat16} and {p.dtype for p in half.parameters() if p.requires_grad} == {torch.float32}
    batch = Collator(0)(rows(97, [23, 9, 17], seed=5))
    n_items = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
    losses = {}
    for name, model in (("fp32", ref), ("bf16", half)):
        loss_path, _ = choose_loss(model, head_on_labels=True, packing=False, device="cpu", distributed="NO")
        labels = batch["labels"]
        with autocast(name):
            loss = loss_path(model(**loss_path.model_inputs({k: v for k, v in batch.items() if k != "labels"})), labels, n_items)
        loss.backward()
        losses[name] = float(loss)
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=LOSS_REL["bf16"])
    want, got = grads(ref), grads(half)
    assert want.keys() == got.keys() and all(g.dtype == torch.float32 for g in got.values())
    for k in want:  # bf16 rounding of weights and activations: the gradients' third digit
        torch.testing.assert_close(got[k], want[k], rtol=3e-2, atol=3e-4)


def test_bf16_frozen_weights_through_the_trainer(tmp_path, tiny_dir, short_sample):
    """The knob reaches the loaded model: its frozen weights are bf16, the adapter it saves fp32,
    and the run's held-out loss is the fp32 run's within bf16's tolerance; in fp32 it is ignored."""
    from thinktune.sft import train

    fp32 = train(tiny_config(tmp_path, tiny_dir, short_sample, "fp32", "model.cpu_bf16_weights=true"))
    half = train(tiny_config(tmp_path, tiny_dir, short_sample, "half", "model.precision=bf16", "model.cpu_bf16_weights=true"))
    assert {p.dtype for p in fp32.model.parameters()} == {torch.float32}  # fp32 run: the knob changes nothing
    assert {p.dtype for p in half.model.parameters() if not p.requires_grad} == {torch.bfloat16}
    off = train(tiny_config(tmp_path, tiny_dir, short_sample, "off", "model.precision=bf16"))  # the default: off
    assert {p.dtype for p in off.model.parameters()} == {torch.float32}  # switched off: fp32 weights under autocast
    from safetensors.torch import load_file

    assert {t.dtype for t in load_file(half.run_dir / "adapter_model.safetensors").values()} == {torch.float32}
    assert half.summary["precision"] == "bf16" and half.summary["optimizer_steps"] == fp32.summary["optimizer_steps"] == 2
    assert half.summary["eval_loss_end"] == pytest.approx(fp32.summary["eval_loss_end"], rel=LOSS_REL["bf16"])


def test_the_head_runs_in_the_runs_half_precision_outside_autocast():
    """accelerate gives the loss fp32 hidden states outside its autocast (issue 18): a bf16 run's
    Loss still multiplies the head in bf16, bit for bit as under autocast, and an fp32 run's does not."""
    model = lora(tiny_model("llama", 97, seed=6))
    batch = Collator(0)(rows(97, [23, 9], seed=7))
    labels = batch.pop("labels")
    with torch.no_grad():
        bf16, _ = choose_loss(model, head_on_labels=True, packing=False, device="cpu", distributed="NO", precision="bf16")
        fp32, _ = choose_loss(model, head_on_labels=True, packing=False, device="cpu", distributed="NO")
        assert bf16.half == torch.bfloat16 and fp32.half is None
        out = model(**fp32.model_inputs(batch))
        hidden = out.hidden_states[-1].float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under = linear_cross_entropy(hidden, bf16.head.weight, labels)
        plain = linear_cross_entropy(hidden, bf16.head.weight, labels)
        assert float(bf16(out, labels)) == float(under) != float(plain) == float(fp32(out, labels))
        assert float(under) == pytest.approx(float(plain), rel=LOSS_REL["bf16"])
