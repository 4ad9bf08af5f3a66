"""GGUF export: the file loads back through transformers' GGUF loader with logits within a
tolerance fitting the format; read back as llama.cpp reads it, it tokenizes as training did; the
Modelfile, run through Go's text/template as Ollama runs it, renders a chat as training did."""

import copy
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import IN_CI, ROOT, tiny_model
from thinktune.cli import main
from thinktune.export import export_gguf, merge, modelfile
from thinktune.gguf_vocab import backend_from_header, read_header

# Stated tolerances on logits (max absolute difference over a 30-token prompt): f16 rounds
# every weight to 11 significant bits; q8_0 stores blocks of 32 weights in 8 bits with a scale.
F16_MAX, Q8_MAX, Q8_MEAN = 0.1, 2.0, 0.3
# Blank lines, digits, CJK, a think block and special tokens: where a wrong split shows (issue 15).
ROUND_TRIP = "<think>\nFever 38.5 °C for 3 days, WBC 12000.\n\n  发热三天，颈项强直。\n</think>\n\nLumbar puncture (1 of 2024 cases).\n\n\n"


def file_ids(path, text):
    """The ids llama.cpp gives `text` from the file's own tokenizer metadata (special tokens parsed)."""
    return backend_from_header(read_header(path)).encode(text, add_special_tokens=False).ids


def _compare(merged_dir, gguf_path, text):
    """The file tokenizes `text` as the merged folder does; max and mean logit difference on it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ids = AutoTokenizer.from_pretrained(merged_dir)(text, add_special_tokens=False)["input_ids"]
    assert file_ids(gguf_path, text) == ids
    ref = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32).eval()
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32).eval()
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
    # Issue 15: the system line SmolLM2's template (and so training) puts first, a context for a
    # training example plus an answer, and the run's name in the file.
    from transformers import AutoTokenizer

    system = AutoTokenizer.from_pretrained(smoke_run[1]).apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    assert system.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>")
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in mf.splitlines()
    max_length = json.loads((smoke_run[1] / "summary.json").read_text())["data"]["max_length"]
    ctx = int(next(line for line in mf.splitlines() if line.startswith("PARAMETER num_ctx ")).split()[-1])
    assert ctx % 1024 == 0 and max_length + 2048 <= ctx < max_length + 2048 + 1024
    import gguf

    assert gguf.GGUFReader(path).fields["general.name"].contents() == smoke_run[1].name
    # The tokenizer block is the one llama.cpp's converter wrote into the SmolLM2 GGUF the demo model
    # comes from (its pre "smollm": digit by digit), and read back it gives the training ids.
    from thinktune.model import resolve

    source = resolve("smollm2-demo")
    assert read_header(path) == read_header(Path(source.path) / source.gguf_file)
    assert file_ids(path, ROUND_TRIP) == AutoTokenizer.from_pretrained(smoke_run[1])(ROUND_TRIP, add_special_tokens=False)["input_ids"]
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

    from thinktune.r1_tokenizer import gguf_part_path

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
    for key, value in real.items():  # the pre name too: deepseek-r1-qwen, as llama.cpp's converter wrote
        assert ours.fields[key].contents() == value, key
    assert file_ids(path, ROUND_TRIP) == r1_tokenizer(ROUND_TRIP, add_special_tokens=False)["input_ids"]
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
        reason="llama-cpp-python is not installed here: PyPI ships it as a C++ source build that make setup does not compile; the GGUF's weights are checked through transformers' GGUF loader and its tokenizer as llama.cpp builds it (gguf_vocab) instead",
    )
    path = export_gguf(demo_merged, tmp_path / "d.gguf", "f16")
    llm = llama_cpp.Llama(model_path=str(path), verbose=False)
    out = llm("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", max_tokens=8, temperature=0)
    assert out["choices"][0]["text"]


# Issue 15: the Modelfile's TEMPLATE and SYSTEM, run as Ollama runs them (tests/ollama_render.go:
# Go's own text/template, with the system message and message joining of Ollama's chat handler),
# give the text that training and `thinktune chat` render (render.render_prompt) for the same chat.
CHATS = [
    [{"role": "user", "content": "A 30-year-old has fever and neck stiffness. Next step?"}],
    [
        {"role": "user", "content": "Fever 38.5 °C for 3 days. Cause?"},
        {"role": "assistant", "content": "Most likely a viral infection."},
        {"role": "user", "content": "发热三天，下一步？"},
    ],
]


@pytest.fixture(scope="module")
def ollama_render(tmp_path_factory):
    go = shutil.which("go")
    if go is None:
        why = "Go is not installed (apt-get install golang-go): the Modelfile test runs Ollama's template engine, Go's text/template"
        if IN_CI:
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    binary = tmp_path_factory.mktemp("go") / "ollama_render"
    subprocess.run([go, "build", "-o", str(binary), str(ROOT / "tests" / "ollama_render.go")], check=True, env={**os.environ, "GO111MODULE": "off"})

    def render(modelfile_text: str, messages: list[dict]) -> str:
        template = modelfile_text.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
        system = modelfile_text.split('SYSTEM """', 1)[1].split('"""', 1)[0] if 'SYSTEM """' in modelfile_text else ""
        request = json.dumps({"template": template, "system": system, "messages": messages})
        return subprocess.run([str(binary)], input=request, capture_output=True, text=True, check=True).stdout

    return render


@pytest.fixture(scope="module")
def chat_tokenizers(smoke_run, r1_tokenizer):
    from transformers import AutoTokenizer

    demo = AutoTokenizer.from_pretrained(smoke_run[1])
    plain = copy.deepcopy(demo)
    plain.chat_template = None  # a model without a chat template: render.py's plain format
    return {"chatml": demo, "r1": r1_tokenizer, "plain": plain}


@pytest.mark.parametrize("system", [None, "You are a careful physician. Answer briefly."])
@pytest.mark.parametrize("kind", ["chatml", "r1", "plain"])
def test_the_modelfile_renders_a_chat_as_training_does(kind, system, chat_tokenizers, ollama_render):
    from thinktune.data.encode import bos_prefix
    from thinktune.data.render import render_prompt

    tok = chat_tokenizers[kind]
    text = modelfile("m.gguf", tok, system=system)
    bos = tok.bos_token if bos_prefix(tok) else ""  # llama.cpp adds it itself (the file's add_bos_token)
    for chat in CHATS:
        trained = render_prompt(tok, ([{"role": "system", "content": system}] if system else []) + chat)
        assert bos + ollama_render(text, chat) == trained
