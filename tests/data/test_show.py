"""What happens to every token (data/show.py): read off the pipeline's own labels and pads."""

from __future__ import annotations

import doctest

from thinktune.config import DataConfig
from thinktune.data import IGNORE_INDEX, prepare, show
from thinktune.data.show import token_kinds, token_pieces


def test_docstring_examples_run():
    assert doctest.testmod(show).failed == 0


def test_kinds_follow_the_labels_of_real_chinese_rows_and_the_pieces_spell_the_text(r1_tokenizer, shared_zh):
    p = prepare(DataConfig(path="zh", limit=6, val_fraction=0.0, val_min_rows=0, sample="first"), r1_tokenizer, rows=shared_zh[:6])
    ex = next(e for e in p.train if e["row"] == 2)  # its characters include some that take two byte tokens
    kinds = token_kinds(ex, r1_tokenizer.pad_token_id, r1_tokenizer.eos_token_id, len(ex["input_ids"]) + 3)
    n = len(ex["input_ids"])
    assert [t for t, _, _ in kinds[:n]] == ex["input_ids"] and [k for _, k, _ in kinds[n:]] == ["pad"] * 3
    assert [trained for _, _, trained in kinds[:n]] == [x != IGNORE_INDEX for x in ex["labels"]]
    assert [k for _, k, _ in kinds[:n]].count("prompt") == ex["prompt_tokens"] and kinds[n - 1][1] == "end"
    assert kinds[ex["prompt_tokens"]][0] == r1_tokenizer.convert_tokens_to_ids("<think>")  # thinking starts at the tag
    assert kinds[ex["answer_start"]][1] == "answer" and kinds[ex["answer_start"] - 1][1] == "thinking"
    pieces = token_pieces(r1_tokenizer, kinds[:n])
    text = "".join(t for t, _, _ in pieces)
    assert text == r1_tokenizer.decode(ex["input_ids"], skip_special_tokens=False) and "\ufffd" not in text
    assert any(r1_tokenizer.decode([t]).endswith("\ufffd") for t in ex["input_ids"])  # a byte token alone is no character
    assert len(pieces) < n  # ... and is shown joined with the rest of its character
