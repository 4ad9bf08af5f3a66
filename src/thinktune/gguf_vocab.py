"""A GGUF file's tokenizer, as llama.cpp reads and writes it (`tokenizer.ggml.*`).

A GGUF holds no tokenizer.json: the vocabulary, merges and token types, plus one name,
`tokenizer.ggml.pre`, for the regex that splits text before BPE. llama.cpp knows each name's
regex (its llama-vocab.cpp); a name that does not fit the vocabulary tokenizes every digit run,
blank line or CJK run differently from training (issue 15: SmolLM2's `\\n\\n` became one token
where training saw two). This module is the one table of the names thinktune reads and writes:

- `pre_tokenizer(name)`: the `tokenizers` pre-tokenizer that splits as llama.cpp does for `name`;
  the demo model's tokenizer and the R1 tokenizer are built or mended with it, since transformers
  5.24 has no "smollm" entry and falls back to GPT-2's split without SmolLM2's digit split.
- `pre_name(tokenizer)`: the name export writes, found by splitting a probe text the tokenizer's
  way and each candidate's way (llama.cpp's converter likewise tells tokenizers apart by what they
  do to a probe text), named as llama.cpp's converter names that tokenizer's family.
- `read_header` / `backend_from_header`: a GGUF's tokenizer read back the way llama.cpp builds it.
"""

from __future__ import annotations

from pathlib import Path

from .errors import UserError

# llama.cpp's splits (llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_QWEN2 and _LLAMA3).
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# The names, in the order pre_name tries them. "smollm" is \p{N} then GPT-2's regex, which is
# exactly `tokenizers`' Digits(individual) then ByteLevel's own regex (SmolLM2's tokenizer.json).
NAMES = ("smollm", "gpt-2", "llama-bpe", "qwen2", "deepseek-r1-qwen")
TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_USER_DEFINED, TOKEN_UNUSED = 1, 3, 4, 5
PROBE = "Hello World!\n\n  It's 3.14159, not 12345 or 2024.\tdon't\r\n 发热三天，颈项强直。 \n \n\nend  "
HEADER_KEYS = (
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
    "tokenizer.chat_template",
)


def pre_tokenizer(name: str):
    """The pre-tokenizer llama.cpp's `name` stands for; None for a name not in NAMES."""
    from tokenizers import Regex, pre_tokenizers

    def split(regex: str):
        return pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(regex), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )

    if name == "smollm":
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    if name == "gpt-2":
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if name == "llama-bpe":
        return split(LLAMA3_SPLIT)
    if name in ("qwen2", "deepseek-r1-qwen"):  # one regex; two names for two vocabularies
        return split(QWEN2_SPLIT)
    return None


def _pieces(pre, text: str = PROBE) -> list[str]:
    return [piece for piece, _ in pre.pre_tokenize_str(text)] if pre is not None else []


def pre_name(tokenizer) -> str:
    """The `tokenizer.ggml.pre` that makes llama.cpp split text as `tokenizer` does."""
    ours = _pieces(tokenizer.backend_tokenizer.pre_tokenizer)
    for name in NAMES:
        if _pieces(pre_tokenizer(name)) == ours:
            if name == "qwen2" and "<｜User｜>" in tokenizer.get_vocab():
                return "deepseek-r1-qwen"  # what llama.cpp's converter writes for the R1 distills' vocabulary
            return name
    raise UserError(
        "GGUF export: this tokenizer splits text in a way thinktune cannot name for llama.cpp "
        f"(it knows {', '.join(NAMES)}), so the file would tokenize differently from training. "
        "Convert the merged folder with llama.cpp's own convert_hf_to_gguf.py instead."
    )


def read_header(path: Path) -> dict:
    """The tokenizer fields of a GGUF's header (HEADER_KEYS), also of a file cut short after it."""
    import gguf

    class HeaderOnlyReader(gguf.GGUFReader):
        # The tensor data may lie past the end of a truncated file: read only the header.
        def _build_tensors(self, start_offs, fields):  # noqa: D401
            pass

    reader = HeaderOnlyReader(path)
    return {key: reader.fields[key].contents() for key in HEADER_KEYS if key in reader.fields}


def backend_from_header(h: dict):
    """A `tokenizers.Tokenizer` from a GGUF header, as llama.cpp builds it: byte-level BPE over the
    normal tokens, the control and user-defined tokens matched whole, split by the header's pre name."""
    from tokenizers import AddedToken, Tokenizer, decoders, models

    tokens, types = h["tokenizer.ggml.tokens"], h["tokenizer.ggml.token_type"]
    # Every used token at its GGUF id (SmolLM2's control tokens come first, R1's last); the
    # control and user-defined ones are then marked as added, which keeps the ids they have.
    vocab = {t: i for i, (t, ty) in enumerate(zip(tokens, types)) if ty != TOKEN_UNUSED}
    merges = [tuple(m.split(" ", 1)) for m in h["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    pre = pre_tokenizer(h["tokenizer.ggml.pre"])
    if pre is None:
        raise UserError(f"tokenizer.ggml.pre={h['tokenizer.ggml.pre']!r} is not one thinktune can read (it knows {', '.join(NAMES)}).")
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.add_tokens(
        [AddedToken(t, special=(ty == TOKEN_CONTROL), normalized=False) for t, ty in zip(tokens, types) if ty in (TOKEN_CONTROL, TOKEN_USER_DEFINED)]
    )
    return tok
