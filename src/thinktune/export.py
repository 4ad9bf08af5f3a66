"""`thinktune merge`: base + LoRA adapter folded into one plain transformers folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .atomic import scratch_dir, temp_file, write_text
from .errors import UserError
from .outputs import claim, disk_full_explained, staged
from .run import base_model_of, run_config, run_summary

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def merge(run_dir: Path, out: Path, dtype: str = "bf16", overwrite: bool = False) -> Path:
    """Merge the adapter into its base in fp32, then cast to `dtype` and save (safetensors,
    config, tokenizer with the chat template, generation_config with the tokenizer's eos).
    The folder loads with AutoModelForCausalLM alone: no thinktune, no PEFT."""
    from .model import Source, load_model, load_tokenizer, resolve
    from .weights import attach_adapter

    if dtype not in DTYPES:
        raise UserError(f"--dtype {dtype}: choose one of {', '.join(DTYPES)}.")
    name = base_model_of(run_dir)
    source = resolve(name)
    claim(out, "merged model", overwrite, sources=(run_dir, source.path))  # before the minutes of loading
    tokenizer = load_tokenizer(Source(str(run_dir), str(run_dir)))  # the run saved its tokenizer and template
    base = load_model(source, torch.float32, "cpu")
    model = attach_adapter(base, run_dir, name).merge_and_unload()  # whole files that fit this base, or one clear error
    model = model.to(DTYPES[dtype])
    gen = model.generation_config
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    if tokenizer.bos_token_id is not None:
        gen.bos_token_id = tokenizer.bos_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    with staged(out, "merged model") as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    return out


# --- GGUF export ---------------------------------------------------------------------------
# Written with the `gguf` package's own writer, tensor-name maps and quantizers (the pieces
# llama.cpp's converter uses), for the two families we ship first: Llama and Qwen2.

GGUF_TYPES = ("f16", "q8_0")


def modelfile_path(out_file: Path) -> Path:
    """The Ollama Modelfile beside a .gguf, named after it so two exports can share a folder."""
    return out_file.with_name(f"{out_file.stem}.Modelfile")


MARK_KEY = "thinktune.exported_by"  # a GGUF metadata key runtimes ignore: `export --overwrite` replaces only files with it
MODELFILE_MARK = "# Written by thinktune export gguf"


def exported_gguf(path: Path) -> bool:
    import gguf

    try:
        return MARK_KEY in gguf.GGUFReader(str(path)).fields
    except Exception:  # not a GGUF at all (the reader raises several kinds)
        return False


def export_gguf(source: Path, out_file: Path, qtype: str = "f16", overwrite: bool = False) -> Path:
    """A run folder (merged on the fly) or a merged folder -> one .gguf file, plus an Ollama
    Modelfile beside it. The file is written under a temporary name and renamed when complete."""
    if qtype not in GGUF_TYPES:
        raise UserError(f"--type {qtype}: choose f16 or q8_0.")
    if out_file.suffix != ".gguf":
        raise UserError(f"--out {out_file}: the file name should end in .gguf.")
    if not (source / "adapter_config.json").exists() and not (source / "config.json").exists():
        raise UserError(f"{source} is neither a thinktune run folder nor a merged model folder (no adapter_config.json or config.json).")
    claim(out_file, "file", overwrite, sources=(source,), ours=exported_gguf)
    claim(modelfile_path(out_file), "file", overwrite, ours=lambda p: p.read_text(encoding="utf-8", errors="replace").startswith(MODELFILE_MARK))
    facts = _run_facts(source)
    if (source / "adapter_config.json").exists():
        with disk_full_explained(out_file), scratch_dir(out_file.resolve().parent, ".merge-") as merged:  # a killed export's is swept by the next
            merge(source, merged / "m", dtype="fp32")
            return _export(merged / "m", out_file, qtype, facts)
    return _export(source, out_file, qtype, facts)


def _run_facts(source: Path) -> dict:
    """What the Modelfile and the GGUF's name take from a run folder (issue 15): its name, the
    system message it trained with, its max length. A merged folder gives its name only."""
    cfg = run_config(source)
    return {
        "name": source.resolve().name,
        "system": cfg.data.system_prompt if cfg is not None else None,
        "max_length": run_summary(source).get("data", {}).get("max_length"),
    }


def _export(source: Path, out_file: Path, qtype: str, facts: dict) -> Path:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source)
    arch = _gguf_arch(model.config.model_type)
    tmp = temp_file(out_file)
    try:
        with disk_full_explained(out_file):
            _write_gguf(model, tokenizer, arch, qtype, tmp, facts["name"])
            os.replace(tmp, out_file)
            write_text(modelfile_path(out_file), modelfile(out_file.name, tokenizer, facts["system"], facts["max_length"]))
    finally:
        tmp.unlink(missing_ok=True)
    return out_file


def _gguf_arch(model_type: str):
    import gguf

    archs = {"llama": gguf.MODEL_ARCH.LLAMA, "qwen2": gguf.MODEL_ARCH.QWEN2}
    if model_type not in archs:
        raise UserError(
            f"GGUF export covers Llama and Qwen2 models; this one is '{model_type}'. llama.cpp's convert_hf_to_gguf.py on the merged folder covers more."
        )
    return archs[model_type]


def _write_gguf(model, tokenizer, arch, qtype: str, path: Path, name: str) -> None:
    import gguf

    c = model.config
    w = gguf.GGUFWriter(str(path), gguf.MODEL_ARCH_NAMES[arch])
    w.add_name(name)  # the run's name (general.name), not the scratch folder it was merged into
    w.add_string(MARK_KEY, "thinktune")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if qtype == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0)
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    rope: Any = (getattr(c, "rope_parameters", None) or {}).get("rope_theta") or getattr(c, "rope_theta", 10000.0)
    w.add_context_length(c.max_position_embeddings)
    w.add_embedding_length(c.hidden_size)
    w.add_block_count(c.num_hidden_layers)
    w.add_feed_forward_length(c.intermediate_size)
    w.add_head_count(c.num_attention_heads)
    w.add_head_count_kv(c.num_key_value_heads)
    w.add_rope_freq_base(float(rope))
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(c.rms_norm_eps)
    w.add_vocab_size(c.vocab_size)
    _add_tokenizer(w, tokenizer, c.vocab_size)
    _add_tensors(w, model, arch, qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _add_tokenizer(w, tokenizer, vocab_size: int) -> None:
    """Byte-level BPE vocabulary in llama.cpp's layout: tokens in id order, their types, merges."""
    import json

    from .data.encode import bos_prefix
    from .gguf_vocab import TOKEN_CONTROL, TOKEN_NORMAL, TOKEN_UNUSED, TOKEN_USER_DEFINED, pre_name

    n = len(tokenizer)
    tokens = tokenizer.convert_ids_to_tokens(list(range(n)))
    types = [TOKEN_NORMAL] * n
    for i, added in tokenizer.added_tokens_decoder.items():
        types[i] = TOKEN_CONTROL if added.special else TOKEN_USER_DEFINED
    # Embedding rows past the tokenizer (Qwen pads 151665 -> 152064) are unused placeholders.
    tokens += [f"[PAD{i}]" for i in range(n, vocab_size)]
    types += [TOKEN_UNUSED] * (vocab_size - n)
    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    merges = [m if isinstance(m, str) else " ".join(m) for m in backend["model"]["merges"]]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre_name(tokenizer))  # the split llama.cpp must use to tokenize as training did
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for name in ("bos", "eos", "pad", "unk"):
        token_id = getattr(tokenizer, f"{name}_token_id")
        if token_id is not None:
            getattr(w, f"add_{name}_token_id" if name != "unk" else "add_unk_token_id")(token_id)
    w.add_add_bos_token(bool(bos_prefix(tokenizer)))
    if tokenizer.chat_template:
        w.add_chat_template(tokenizer.chat_template)


def _add_tensors(w, model, arch, qtype: str) -> None:
    import gguf

    c = model.config
    names = gguf.get_tensor_name_map(arch, c.num_hidden_layers)
    tied = getattr(c, "tie_word_embeddings", False)
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UserError(f"GGUF export: no GGUF name for tensor {hf_name}.")
        data = tensor.float().numpy()
        if arch == gguf.MODEL_ARCH.LLAMA and hf_name.endswith(("q_proj.weight", "k_proj.weight")):
            # llama.cpp's Llama layout interleaves rotary halves (its convert_hf_to_gguf permute).
            heads = c.num_attention_heads if "q_proj" in hf_name else c.num_key_value_heads
            data = data.reshape(heads, 2, data.shape[0] // heads // 2, *data.shape[1:]).swapaxes(1, 2).reshape(data.shape)
        if data.ndim == 1:
            w.add_tensor(name, data.astype("float32"))
        elif qtype == "q8_0" and data.shape[-1] % 32 == 0:
            w.add_tensor(name, gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0), raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(name, data.astype("float16"))


R1_OLLAMA_TEMPLATE = """{{- if .System }}{{ .System }}{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1}}
{{- if eq .Role "user" }}<｜User｜>{{ .Content }}
{{- else if eq .Role "assistant" }}<｜Assistant｜>{{ .Content }}{{- if not $last }}<｜end▁of▁sentence｜>{{- end }}
{{- end }}
{{- if and $last (ne .Role "assistant") }}<｜Assistant｜>{{- end }}
{{- end }}"""
# Ollama puts the Modelfile's SYSTEM into .Messages as a system message (and into .System too):
# ChatML writes every message by its role, so a separate .System block would say it twice.
CHATML_OLLAMA_TEMPLATE = """{{- range .Messages }}<|im_start|>{{ .Role }}
{{ .Content }}<|im_end|>
{{ end }}<|im_start|>assistant
"""


def plain_ollama_template() -> str:
    """The plain format (a tokenizer without a chat template) in Ollama's syntax, from the pieces
    render.py trains with, so the two cannot drift apart."""
    from .data.render import PLAIN_ASSISTANT, PLAIN_GENERATION, PLAIN_SYSTEM, PLAIN_USER

    c = "{{ .Content }}"
    return (
        f'{{{{- range .Messages }}}}{{{{ if eq .Role "system" }}}}{PLAIN_SYSTEM.format(system=c)}'
        f'{{{{ else if eq .Role "user" }}}}{PLAIN_USER.format(content=c)}'
        f"{{{{ else }}}}{PLAIN_ASSISTANT.format(content=c)}{{{{ end }}}}{{{{ end }}}}{PLAIN_GENERATION}"
    )


def template_system(tokenizer) -> str | None:
    """The system message a ChatML template puts first when a conversation has none (SmolLM2's
    "You are a helpful AI assistant named SmolLM, ..."): training saw it, so Ollama must say it."""
    if "<|im_start|>" not in (tokenizer.chat_template or ""):
        return None
    text = tokenizer.apply_chat_template([{"role": "user", "content": "x"}], tokenize=False)
    head = "<|im_start|>system\n"
    return text[len(head) : text.index("<|im_end|>")] if text.startswith(head) else None


def num_ctx(max_length: int | None) -> int | None:
    """Ollama's context: the run's longest training example plus thinktune's generation budget,
    in whole KiB of tokens; Ollama's own default (2048) would cut R1-style thinking mid-way."""
    from .decoding import Decoding

    return None if max_length is None else -(-(max_length + Decoding().max_new_tokens) // 1024) * 1024


def modelfile(gguf_name: str, tokenizer, system: str | None = None, max_length: int | None = None) -> str:
    """An Ollama Modelfile: the chat format in Ollama's template syntax, the system message the
    model was trained with, stop tokens, a context that holds a training example and an answer,
    and DeepSeek's sampling advice for R1 models (temperature 0.6, top-p 0.95)."""
    template = tokenizer.chat_template or ""
    if "<｜User｜>" in template:
        body, stops = R1_OLLAMA_TEMPLATE, ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>"]
    elif "<|im_start|>" in template:
        body, stops = CHATML_OLLAMA_TEMPLATE, ["<|im_start|>", "<|im_end|>"]
    else:
        body, stops = plain_ollama_template(), ["### Question:"]
    if tokenizer.eos_token and tokenizer.eos_token not in stops:
        stops.append(tokenizer.eos_token)
    lines = [MODELFILE_MARK, f"FROM ./{gguf_name}", f'TEMPLATE """{body}"""']
    if (system := system or template_system(tokenizer)) is not None:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    if (ctx := num_ctx(max_length)) is not None:
        lines.append(f"PARAMETER num_ctx {ctx}")
    lines += ["PARAMETER temperature 0.6", "PARAMETER top_p 0.95"]
    return "\n".join(lines) + "\n"
