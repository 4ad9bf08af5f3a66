"""Shared fixtures: the real R1-distill tokenizer, a tiny exact tokenizer, tiny random models, real data."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fixtures import r1_tokenizer as r1  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CACHE = Path(os.environ.get("THINKTUNE_CACHE", Path.home() / ".cache" / "thinktune"))

R1_BOS, R1_EOS, R1_USER, R1_ASSISTANT, R1_THINK, R1_THINK_END = 151646, 151643, 151644, 151645, 151648, 151649


@pytest.fixture(scope="session")
def r1_tokenizer_dir() -> Path:
    """The real DeepSeek-R1-Distill-Qwen tokenizer, built once from the GGUF header into the cache."""
    target = CACHE / "fixtures" / "r1-distill-qwen-tokenizer-v1"
    if not (target / "tokenizer.json").exists():
        from thinktune.atomic import temp_dir

        with temp_dir(target.parent, ".tmp-") as tmp:
            r1.build(tmp)
            os.replace(tmp, target)
    return target


@pytest.fixture(scope="session")
def r1_tokenizer(r1_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(r1_tokenizer_dir)


TINY_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<assistant> {% endif %}"
)
TINY_WORDS = ["<pad>", "<s>", "</s>", "<user>", "<assistant>", "<system>", "<think>", "</think>",
              "what", "is", "two", "plus", "two", "?", "add", "them", ".", "four", "the", "answer", "<unk>"]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A word-level tokenizer with known ids, for exact-value tests."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {}
    for w in TINY_WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", vocab["<s>"])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="</s>", unk_token="<unk>")
    fast.add_special_tokens({"additional_special_tokens": ["<user>", "<assistant>", "<system>"]})
    fast.chat_template = TINY_TEMPLATE
    return fast


def tiny_model(arch: str, vocab_size: int, seed: int = 0):
    """A tiny random model built from a config (no weights downloaded)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    common = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096)
    if arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=False))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=True))
    return model.eval()


def load_shared(name: str) -> list[dict]:
    path = SHARED / "train" / name
    if not path.exists():
        pytest.skip(f"{path} is absent: the real medical CoT data lives in ../shared/data beside the project")
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def shared_en() -> list[dict]:
    return load_shared("medical_o1_sft_en.json")


@pytest.fixture(scope="session")
def shared_zh() -> list[dict]:
    return load_shared("medical_o1_sft_zh.json")


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """A 2-step LoRA run of the real demo model (SmolLM2-135M) on 4 rows cut to 192 tokens."""
    from thinktune import config
    from thinktune.train import run_training

    out = tmp_path_factory.mktemp("runs") / "smoke"
    cfg = config.load(None, [
        "model.name=smollm2-demo", f"data.path={ROOT / 'examples' / 'data' / 'medical_o1_en_sample.json'}", "data.limit=6", "data.val_fraction=0.01",
        "data.val_min_rows=2", "data.max_length=192", "data.overflow=truncate", "train.epochs=1",
        "train.batch_size=2", "train.grad_accum=1", "train.logging_steps=1", "train.eval_steps=1",
        f"train.output_dir={out}", "lora.target_modules=q_proj,v_proj",
    ])
    summary, model, tokenizer, data = run_training(cfg)
    return cfg, out, summary, model, data


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory, r1_tokenizer_dir):
    """A tiny random Qwen2 saved as a model folder with the real R1 tokenizer, for runs that load a
    model by path (the CLI, subprocesses) as users do."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny-qwen2")
    tiny_model("qwen2", 151936, seed=0).save_pretrained(folder)
    AutoTokenizer.from_pretrained(r1_tokenizer_dir).save_pretrained(folder)
    return folder
