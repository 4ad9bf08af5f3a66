"""llama.cpp's tokenizer names (gguf_vocab.py): the names written are the ones llama.cpp's own
converter wrote into the two reference GGUF headers the project carries, the demo model's tokenizer
splits as its source does, and a GGUF header read back tokenizes as the tokenizer it came from."""

from pathlib import Path

import pytest

from thinktune.errors import UserError
from thinktune.gguf_vocab import NAMES, backend_from_header, pre_name, pre_tokenizer, read_header
from thinktune.model import load_tokenizer, resolve
from thinktune.r1_tokenizer import gguf_part_path

TEXT = "<|im_start|>user\nFever 38.5 for 3 days\n\n发热三天 in 2024?<|im_end|>\n<think>\nWBC 12000.\n\n\nend"


@pytest.fixture(scope="module")
def demo():
    source = resolve("smollm2-demo")
    return load_tokenizer(source), Path(source.path) / source.gguf_file


def test_the_names_are_the_ones_in_the_reference_headers(demo, r1_tokenizer):
    tok, smollm2_gguf = demo
    assert pre_name(tok) == read_header(smollm2_gguf)["tokenizer.ggml.pre"] == "smollm"
    assert pre_name(r1_tokenizer) == read_header(gguf_part_path())["tokenizer.ggml.pre"] == "deepseek-r1-qwen"


def test_the_demo_tokenizer_splits_digits_and_blank_lines_as_smollm2_does(demo):
    """SmolLM2's tokenizer.json: every digit alone, then GPT-2's split, which keeps a blank line
    before a word as two newline tokens. transformers' own GGUF conversion split ' 2024' as one
    piece; SmolLM2's merges hold no digit pairs, so its tokens came out the same, but the piece
    told export the wrong name (gpt-2 here, llama-bpe before)."""
    tok, _ = demo
    assert [p for p, _ in tok.backend_tokenizer.pre_tokenizer.pre_tokenize_str(" 2024")] == ["Ġ", "2", "0", "2", "4"]
    assert tok.tokenize(" 2024") == ["Ġ", "2", "0", "2", "4"]
    assert tok.tokenize("a\n\nb") == ["a", "Ċ", "Ċ", "b"]
    llama3 = backend_from_header({**read_header(demo[1]), "tokenizer.ggml.pre": "llama-bpe"})
    assert llama3.encode("a\n\nb").tokens == ["a", "ĊĊ", "b"]  # what the old export's name, llama-bpe, told llama.cpp


def test_a_header_read_back_gives_the_tokenizers_own_ids(demo, r1_tokenizer):
    tok, smollm2_gguf = demo
    assert backend_from_header(read_header(smollm2_gguf)).encode(TEXT, add_special_tokens=False).ids == tok(TEXT, add_special_tokens=False)["input_ids"]
    r1_text = TEXT.replace("<|im_start|>", "<｜User｜>").replace("<|im_end|>", "<｜Assistant｜>")
    r1_ids = backend_from_header(read_header(gguf_part_path())).encode(r1_text, add_special_tokens=False).ids
    assert r1_ids == r1_tokenizer(r1_text, add_special_tokens=False)["input_ids"]
    assert r1_ids[r1_ids.index(151648) + 1 :][:1] == [198]  # <think> then one newline, as training has it


def test_every_name_splits_differently_from_the_others_but_the_qwen2_pair():
    pieces = {name: [p for p, _ in pre_tokenizer(name).pre_tokenize_str(TEXT)] for name in NAMES}
    assert pieces["qwen2"] == pieces["deepseek-r1-qwen"]
    distinct = {name: tuple(p) for name, p in pieces.items() if name != "deepseek-r1-qwen"}
    assert len(set(distinct.values())) == len(distinct)
    assert pre_tokenizer("no-such-split") is None


def test_a_split_without_a_name_is_refused_with_a_reason(demo):
    import copy

    from tokenizers import pre_tokenizers

    tok = copy.deepcopy(demo[0])
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    with pytest.raises(UserError, match="splits text in a way thinktune cannot name for llama.cpp"):
        pre_name(tok)
    with pytest.raises(UserError, match="tokenizer.ggml.pre='jais' is not one thinktune can read"):
        backend_from_header({**read_header(demo[1]), "tokenizer.ggml.pre": "jais"})
