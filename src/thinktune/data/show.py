"""What happens to every token of one training example: the web page's coloured example (issue 16).

Read off what the pipeline made (an example of `prepare`, padded by the real `Collator`), never
re-derived: the colours show the labels the Trainer will see. Kinds: `prompt` (not trained unless
data.train_on_prompt), `thinking` (from the think tag to the answer), `answer`, `end` (the end
token, trained) and `pad` (masked by position, never trained).
"""

from __future__ import annotations

from .collate import Collator
from .encode import IGNORE_INDEX

KINDS = ("prompt", "thinking", "answer", "end", "pad")


def token_kinds(example: dict, pad_id: int, eos_id: int, padded_to: int | None = None) -> list[tuple[int, str, bool]]:
    """(token id, kind, trained) for each position of `example` as the collator pads it in a batch
    whose longest row has `padded_to` tokens.

    >>> ex = {"input_ids": [5, 6, 7, 8, 9, 2], "labels": [-100, -100, 7, 8, 9, 2], "prompt_tokens": 2, "answer_start": 4}
    >>> token_kinds(ex, pad_id=2, eos_id=2, padded_to=8)
    [(5, 'prompt', False), (6, 'prompt', False), (7, 'thinking', True), (8, 'thinking', True), (9, 'answer', True), (2, 'end', True), (2, 'pad', False), (2, 'pad', False)]
    """
    n = len(example["input_ids"])
    filler = {"input_ids": [pad_id] * max(n, padded_to or 0), "labels": [IGNORE_INDEX] * max(n, padded_to or 0)}
    batch = Collator(pad_id)([example, filler])
    ids, labels, mask = (batch[k][0].tolist() for k in ("input_ids", "labels", "attention_mask"))
    out = []
    for i, (tok, label, real) in enumerate(zip(ids, labels, mask)):
        if not real:
            kind = "pad"
        elif i < example["prompt_tokens"]:
            kind = "prompt"
        elif i == n - 1 and tok == eos_id and label != IGNORE_INDEX:
            kind = "end"
        elif i < example["answer_start"]:
            kind = "thinking"
        else:
            kind = "answer"
        out.append((tok, kind, label != IGNORE_INDEX))
    return out


def token_pieces(tokenizer, kinds: list[tuple[int, str, bool]]) -> list[tuple[str, str, bool]]:
    """The text of each token (special tokens as written), tokens that only together make a
    character (a Chinese character is often 2-3 byte tokens) joined into one piece.

    Why not `decode([id])` per token: a byte token alone decodes to U+FFFD."""
    pieces: list[tuple[str, str, bool]] = []
    start = 0
    for i in range(len(kinds)):
        text = tokenizer.decode([t for t, _, _ in kinds[start : i + 1]], skip_special_tokens=False)
        if text.endswith("\ufffd") and i + 1 < len(kinds) and kinds[i + 1][1] == kinds[i][1]:
            continue  # an incomplete character: wait for its next byte
        pieces.append((text, kinds[i][1], kinds[i][2]))
        start = i + 1
    return pieces
