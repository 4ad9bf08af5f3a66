"""Generation for eval, compare, generate and the demo: continuous batching (batching.py), with a
progress bar, stop reasons and the thinking budget; static left-padded batches for models the
batching engine does not run."""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from ..data.render import opens_think
from ..decoding import Decoding
from ..errors import UserError
from .batching import Engine, Row, fit_slots, supported
from .budget import ThinkBudget
from .vllm_backend import VllmModel


def opened(tokenizer, prompt: list[int]) -> bool:
    """The prompt ends inside `<think>` (the R1 template opens it for the model); its last tokens
    decoded are enough."""
    return opens_think(tokenizer.decode(prompt[-8:], skip_special_tokens=False))


def result(tokenizer, row: Row) -> dict:
    """What a generation gives its caller: the text (no special tokens), the generated token count
    (the end token not counted), why it stopped, and how the thinking budget closed it (or None)."""
    text = tokenizer.decode(row.out, skip_special_tokens=True)
    return {"text": text, "tokens": len(row.out), "stop": row.stop, "forced_close": row.budget.forced if row.budget else None}


def generate_all(model, tokenizer, prompts: list[list[int]], dec: Decoding, desc: str = "generating", on_batch=None) -> tuple[list[dict], dict]:
    """All prompts, results in the input order, and speed figures (items/s, generated tokens/s).
    `on_batch(indices, results)` sees the rows as they finish, so a long job can save as it goes."""
    if isinstance(model, VllmModel):  # --backend vllm
        return model.generate_all(tokenizer, prompts, dec, desc, on_batch)
    model.eval()
    if not prompts:
        return [], _speed(0, 0, 0.0)
    if not supported(model):
        if dec.max_thinking_tokens is not None:
            raise UserError(
                f"--max-thinking-tokens needs thinktune's batching engine, which runs models with plain attention only; "
                f"{type(model).__name__} has sliding-window or other attention layers. Leave the thinking budget out for this model."
            )
        return generate_static(model, tokenizer, prompts, dec, desc, on_batch)
    rows = [Row(i, list(p)) for i, p in enumerate(prompts)]
    if dec.max_thinking_tokens is not None:
        for r in rows:
            r.budget = ThinkBudget(tokenizer, dec.max_thinking_tokens, opened(tokenizer, r.prompt))
    results: list[dict | None] = [None] * len(prompts)
    generated, start = 0, time.perf_counter()
    with tqdm(total=len(prompts), desc=desc, unit="item") as bar:
        slots = fit_slots(model, min(dec.batch_size, len(prompts)), max(map(len, prompts), default=0) + dec.max_new_tokens)
        if slots < min(dec.batch_size, len(prompts)):
            bar.write(f"Generating {slots} rows at a time, not --batch-size {dec.batch_size}: the cache of more would not fit in the free memory.")
            dec = Decoding(**{**dec.to_dict(), "batch_size": slots})

        def done(row: Row) -> None:
            nonlocal generated
            results[row.index] = result(tokenizer, row)
            generated += len(row.out)
            if on_batch is not None:
                on_batch([row.index], [results[row.index]])
            bar.update(1)
            bar.set_postfix(tokens_per_s=f"{generated / (time.perf_counter() - start):.1f}")

        Engine(model, tokenizer, dec).run(rows, done)
    return [r for r in results if r is not None], _speed(len(prompts), generated, time.perf_counter() - start)


def _speed(items: int, generated: int, elapsed: float) -> dict:
    elapsed = max(elapsed, 1e-9)
    return {"seconds": round(elapsed, 2), "items_per_second": round(items / elapsed, 3), "tokens_per_second": round(generated / elapsed, 1)}


def generate_static(model, tokenizer, prompts: list[list[int]], dec: Decoding, desc: str = "generating", on_batch=None) -> tuple[list[dict], dict]:
    """Static batches of similar length through `model.generate`: each batch runs until its
    longest row ends. The path before issue 14, kept for models the engine does not run and as
    the baseline of benchmarks/eval_speed.py."""
    model.eval()
    if dec.temperature > 0 and dec.seed is not None:
        torch.manual_seed(dec.seed)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list[dict | None] = [None] * len(prompts)
    generated, start = 0, time.perf_counter()
    with tqdm(total=len(prompts), desc=desc, unit="item") as bar:
        for s in range(0, len(order), dec.batch_size):
            idx = order[s : s + dec.batch_size]
            batch = static_batch(model, tokenizer, [prompts[i] for i in idx], dec)
            for i, r in zip(idx, batch):
                results[i] = r
                generated += r["tokens"]
            if on_batch is not None:
                on_batch(idx, batch)
            bar.update(len(idx))
            bar.set_postfix(tokens_per_s=f"{generated / (time.perf_counter() - start):.1f}")
    return [r for r in results if r is not None], _speed(len(prompts), generated, time.perf_counter() - start)


@torch.no_grad()
def static_batch(model, tokenizer, prompts: list[list[int]], dec: Decoding) -> list[dict]:
    """One left-padded batch through `model.generate`; per prompt the text, token count and stop."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    from ..model import inference_autocast

    device = next(model.parameters()).device
    sample = dec.temperature > 0
    extra = {"temperature": dec.temperature, "top_p": dec.top_p} if sample else {}
    with inference_autocast(device.type):
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
        results.append({"text": text, "tokens": len(row), "stop": "eos" if stopped else "max_new_tokens", "forced_close": None})
    return results
