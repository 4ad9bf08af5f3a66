"""Batched generation with left padding, greedy or sampled, with a progress bar and stop reasons."""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from ..decoding import Decoding


@torch.no_grad()
def generate_batch(model, tokenizer, prompts: list[list[int]], dec: Decoding) -> list[dict]:
    """One left-padded batch; returns per prompt the text, token count and why it stopped."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    device = next(model.parameters()).device
    sample = dec.temperature > 0
    extra = {"temperature": dec.temperature, "top_p": dec.top_p} if sample else {}
    out = model.generate(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        max_new_tokens=dec.max_new_tokens,
        do_sample=sample,
        repetition_penalty=dec.repetition_penalty,
        pad_token_id=pad,
        eos_token_id=tokenizer.eos_token_id,
        **extra,
    )
    results = []
    for row in out[:, width:].tolist():
        stopped = tokenizer.eos_token_id in row
        row = row[: row.index(tokenizer.eos_token_id)] if stopped else row
        text = tokenizer.decode(row, skip_special_tokens=True)
        results.append({"text": text, "tokens": len(row), "stop": "eos" if stopped else "max_new_tokens"})
    return results


def generate_all(model, tokenizer, prompts: list[list[int]], dec: Decoding, desc: str = "generating", on_batch=None) -> tuple[list[dict], dict]:
    """All prompts in batches of similar length (less padding), results in the input order.
    Returns the results and speed figures (items/s, generated tokens/s). `on_batch(indices,
    results)` sees each batch as it finishes, so a long job can save as it goes."""
    model.eval()
    if dec.temperature > 0 and dec.seed is not None:
        torch.manual_seed(dec.seed)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[dict | None] = [None] * len(prompts)
    generated, start = 0, time.perf_counter()
    with tqdm(total=len(prompts), desc=desc, unit="item") as bar:
        for s in range(0, len(order), dec.batch_size):
            idx = order[s : s + dec.batch_size]
            batch = generate_batch(model, tokenizer, [prompts[i] for i in idx], dec)
            for i, r in zip(idx, batch):
                results[i] = r
                generated += r["tokens"]
            if on_batch is not None:
                on_batch(idx, batch)
            elapsed = time.perf_counter() - start
            bar.update(len(idx))
            bar.set_postfix(tokens_per_s=f"{generated / elapsed:.1f}")
    elapsed = time.perf_counter() - start
    speed = {"seconds": round(elapsed, 2), "items_per_second": round(len(prompts) / elapsed, 3), "tokens_per_second": round(generated / elapsed, 1)}
    return [r for r in results if r is not None], speed  # every index was filled
