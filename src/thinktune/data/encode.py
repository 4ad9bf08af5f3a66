"""Stage 4, encode: token ids and labels. `encode_example` is the one place labels are made."""

from __future__ import annotations

IGNORE_INDEX = -100  # the label value PyTorch's cross-entropy (and every HF model) skips


def encode_example(
    prompt_ids: list[int],
    completion_ids: list[int],
    eos_id: int,
    train_on_prompt: bool = False,
    max_length: int | None = None,
) -> dict:
    """Join prompt and completion, append the end token once, and label what is trained.

    Labels are aligned with input_ids: the HF model shifts them by one itself, so we never do.
    Prompt positions get IGNORE_INDEX unless train_on_prompt. With max_length, the example is
    cut at the end (the caller decides whether over-long rows are dropped instead).

    >>> ex = encode_example([5, 6, 7], [8, 9], eos_id=2)
    >>> ex["input_ids"]
    [5, 6, 7, 8, 9, 2]
    >>> ex["labels"]
    [-100, -100, -100, 8, 9, 2]
    >>> encode_example([5, 6], [8, 2], eos_id=2, train_on_prompt=True)["labels"]
    [5, 6, 8, 2]
    >>> encode_example([5, 6, 7], [8, 9], eos_id=2, max_length=4)["labels"]
    [-100, -100, -100, 8]
    """
    completion = list(completion_ids)
    if not completion or completion[-1] != eos_id:
        completion.append(eos_id)
    input_ids = list(prompt_ids) + completion
    prompt_labels = list(prompt_ids) if train_on_prompt else [IGNORE_INDEX] * len(prompt_ids)
    labels = prompt_labels + completion
    if max_length is not None:
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return {"input_ids": input_ids, "labels": labels}


def tokenize(tokenizer, text: str) -> list[int]:
    """Token ids of text as written: special tokens in the text (from the chat template) are
    parsed as such, and nothing is added (the template already wrote the bos)."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def bos_prefix(tokenizer) -> list[int]:
    """The bos id the tokenizer would add itself, for prompts rendered without a template."""
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    bos = tokenizer.bos_token_id
    return [bos] if bos is not None and ids and ids[0] == bos else []


def eos_id(tokenizer) -> int:
    """The tokenizer's real end-of-sequence id (the tutorial's '<|endoftext|>' text is not a
    token of the R1-distill vocabulary and splits into plain pieces)."""
    if tokenizer.eos_token_id is None:
        from ..errors import UserError

        raise UserError(f"The tokenizer of {tokenizer.name_or_path} has no eos token; the model could not learn to stop.")
    return tokenizer.eos_token_id
