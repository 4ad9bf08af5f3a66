"""GGUF export: the file loads back through transformers' GGUF loader with the same tokens and
logits within a tolerance fitting the format; the Modelfile speaks the model's chat format."""

import json

import numpy as np
import pytest
import torch

from conftest import tiny_model
from thinktune.cli import main
from thinktune.export import export_gguf, merge

# Stated tolerances on logits (max absolute difference over a 30-token prompt): f16 rounds
# every weight to 11 significant bits; q8_0 stores blocks of 32 weights in 8 bits with a scale.
F16_MAX, Q8_MAX, Q8_MEAN = 0.1, 2.0, 0.3


def _load_back(path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def _both(merged_dir, gguf_path):
    """The reference folder and the GGUF loaded back, each as (model, tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval(), AutoTokenizer.from_pretrained(merged_dir)), _load_back(gguf_path)


def _compare(merged_dir, gguf_path, text, check_ids=True, loaded=None):
    (ref, ref_tok), (model, tok) = loaded or _both(merged_dir, gguf_path)
    ids = ref_tok(text, add_special_tokens=False)["input_ids"]
    if check_ids:
        assert tok(text, add_special_tokens=False)["input_ids"] == ids
    with torch.no_grad():
        diff = (ref(torch.tensor([ids])).logits - model(torch.tensor([ids])).logits).abs()
    return diff.max().item(), diff.mean().item()


@pytest.fixture(scope="module")
def demo_merged(smoke_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("merged") / "m"
    return merge(smoke_run[1], out, dtype="fp32")


def test_demo_model_f16_from_a_run_folder(smoke_run, demo_merged, tmp_path):
    path = tmp_path / "demo.gguf"
    assert main(["export", "gguf", str(smoke_run[1]), "--out", str(path), "--type", "f16"]) == 0
    text = "<|im_start|>user\nWhat is 12 + 30? <think>\nfirst add</think><|im_end|>\n<|im_start|>assistant\n"
    worst, _ = _compare(demo_merged, path, text)
    assert worst < F16_MAX
    mf = (tmp_path / "demo.Modelfile").read_text()
    assert mf.startswith("# Written by thinktune export gguf\nFROM ./demo.gguf\n") and "<|im_start|>{{ .Role }}" in mf
    assert 'PARAMETER stop "<|im_end|>"' in mf and "PARAMETER temperature 0.6" in mf and "PARAMETER top_p 0.95" in mf
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.Modelfile", "demo.gguf"]  # no scratch merge or temp file left
    from thinktune.export import exported_gguf

    (tmp_path / "other.gguf").write_bytes(b"GGUF not ours")
    assert exported_gguf(path) and not exported_gguf(tmp_path / "other.gguf")  # what --overwrite may replace


def test_demo_model_q8_0(demo_merged, tmp_path):
    path = export_gguf(demo_merged, tmp_path / "demo-q8.gguf", "q8_0")
    assert path.stat().st_size < 0.6 * export_gguf(demo_merged, tmp_path / "demo-f16.gguf", "f16").stat().st_size
    worst, mean = _compare(demo_merged, path, "<|im_start|>user\nName one cause of anemia.<|im_end|>\n<|im_start|>assistant\n<think>\n")
    assert worst < Q8_MAX and mean < Q8_MEAN


QWEN2_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}


def test_tiny_qwen2_with_the_r1_tokenizer(tmp_path, r1_tokenizer):
    base = tiny_model("qwen2", 152064, seed=2)
    src = tmp_path / "qwen"
    base.save_pretrained(src)
    r1_tokenizer.save_pretrained(src)
    path = export_gguf(src, tmp_path / "q.gguf", "f16")
    # The vocabulary block is the one llama.cpp's own converter wrote into the real
    # DeepSeek-R1-Distill-Qwen-7B GGUF: same tokens, token types, merges, special ids, template.
    import gguf

    from thinktune.r1_tokenizer import gguf_part_path, read_header

    real = read_header(gguf_part_path())
    ours = gguf.GGUFReader(path)
    tokens, types = ours.fields["tokenizer.ggml.tokens"].contents(), ours.fields["tokenizer.ggml.token_type"].contents()
    # One known deviation: transformers 5.24 loads any qwen2 folder's tokenizer as Qwen2Tokenizer,
    # which adds its default unk '<|endoftext|>' as a new id 151665 (an unused embedding row in
    # the real file). It is exported as the tokenizer has it; everything else must match.
    assert (tokens[151665], types[151665]) == ("<|endoftext|>", 3)
    real_tokens, real_types = real.pop("tokenizer.ggml.tokens"), real.pop("tokenizer.ggml.token_type")
    assert tokens[:151665] == real_tokens[:151665] and tokens[151666:] == real_tokens[151666:]
    assert types[:151665] == real_types[:151665] and types[151666:] == real_types[151666:]
    for key, value in real.items():
        assert ours.fields[key].contents() == value, key
    # The weights: every tensor in the file against the source model's, within f16 rounding, under
    # llama.cpp's qwen2 names (the demo tests above load a file back through transformers' GGUF
    # loader; doing that here would parse the 152k-token vocabulary twice more, ~40 s).
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
    for key in base.state_dict():
        if key.startswith("model.layers."):
            _, _, i, *module, kind = key.split(".")
            names[key] = f"blk.{i}.{QWEN2_NAMES['.'.join(module)]}.{kind}"
    tensors = {t.name: t for t in ours.tensors}
    assert sorted(tensors) == sorted(names.values())
    for key, name in names.items():
        want = base.state_dict()[key].numpy()
        got = np.asarray(tensors[name].data, dtype=np.float32).reshape(want.shape)
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4, err_msg=name)
    mf = (tmp_path / "q.Modelfile").read_text()
    assert "<｜User｜>{{ .Content }}" in mf and 'PARAMETER stop "<｜end▁of▁sentence｜>"' in mf


def test_unsupported_family_is_a_clear_error(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from thinktune.errors import UserError

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100)).save_pretrained(tmp_path / "g")
    (tmp_path / "g" / "x").write_text(json.dumps({}))
    with pytest.raises(UserError, match="covers Llama and Qwen2"):
        export_gguf(tmp_path / "g", tmp_path / "g.gguf")


def test_llama_cpp_generates_from_the_export(demo_merged, tmp_path):
    llama_cpp = pytest.importorskip(
        "llama_cpp",
        reason="llama-cpp-python is not installed here: PyPI ships it as a C++ source build that make setup does not compile; the GGUF is checked through transformers' GGUF loader instead",
    )
    path = export_gguf(demo_merged, tmp_path / "d.gguf", "f16")
    llm = llama_cpp.Llama(model_path=str(path), verbose=False)
    out = llm("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", max_tokens=8, temperature=0)
    assert out["choices"][0]["text"]
