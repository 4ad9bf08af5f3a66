"""The real R1-Distill-Qwen tokenizer built offline from the GGUF header (r1_tokenizer.py): its
special ids, its template, and the offline path the R1 names take (no hub)."""

from conftest import CACHE, R1_ASSISTANT, R1_BOS, R1_EOS, R1_THINK, R1_THINK_END, R1_USER
from thinktune import r1_tokenizer
from thinktune.model import load_tokenizer, resolve


def test_special_tokens_keep_their_gguf_ids(r1_tokenizer):
    ids = r1_tokenizer("<｜User｜>hi<｜Assistant｜><think>\n", add_special_tokens=False)["input_ids"]
    assert ids[0] == R1_USER and ids[-3:-1] == [R1_ASSISTANT, R1_THINK] and len(ids) == 5
    assert (r1_tokenizer.bos_token_id, r1_tokenizer.eos_token_id, r1_tokenizer.pad_token_id) == (R1_BOS, R1_EOS, R1_EOS)
    assert r1_tokenizer.convert_tokens_to_ids("</think>") == R1_THINK_END and len(r1_tokenizer) == 151665
    assert r1_tokenizer.decode(r1_tokenizer("Ünïcode 中文 text", add_special_tokens=False)["input_ids"]) == "Ünïcode 中文 text"


def test_the_chat_template_is_r1s(r1_tokenizer):
    text = r1_tokenizer.apply_chat_template([{"role": "user", "content": "Why?"}], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<｜begin▁of▁sentence｜>") and "<｜User｜>Why?<｜Assistant｜>" in text
    # an assistant turn keeps only what follows </think>: why render.py writes the reasoning itself
    turn = [{"role": "user", "content": "Why?"}, {"role": "assistant", "content": "<think>\nsecret\n</think>\n\nBecause."}]
    assert "secret" not in r1_tokenizer.apply_chat_template(turn, tokenize=False)


def test_it_is_built_once_into_the_cache(r1_tokenizer_dir):
    assert r1_tokenizer_dir == CACHE / "tokenizers" / "r1-distill-qwen-v1" and (r1_tokenizer_dir / "tokenizer.json").is_file()
    stamp = (r1_tokenizer_dir / "tokenizer.json").stat().st_mtime_ns
    assert r1_tokenizer.cached(CACHE) == r1_tokenizer_dir and (r1_tokenizer_dir / "tokenizer.json").stat().st_mtime_ns == stamp


def test_r1_names_load_it_without_the_hub(monkeypatch, tmp_path, r1_tokenizer):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # any hub call would fail at once
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hub-cache"))
    for name in ("r1-1.5b", "r1-7b", "deepseek-ai/DeepSeek-R1-Distill-Qwen-14B"):
        tok = load_tokenizer(resolve(name))
        assert tok.get_vocab() == r1_tokenizer.get_vocab() and tok.chat_template == r1_tokenizer.chat_template, name
