"""`thinktune demo`: fine-tune the offline demo model, then show base vs tuned on held-out questions."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import torch

from .train import run_training

SHOW_CHARS = 1200  # characters of each answer printed; the full text goes to demo.json


@torch.no_grad()
def generate(model, tokenizer, prompts: list[list[int]], max_new_tokens: int) -> list[dict]:
    """Greedy, batched generation with left padding; returns text and stop reason per prompt."""
    pad = tokenizer.pad_token_id
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    device = next(model.parameters()).device
    model.eval()
    out = model.generate(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        repetition_penalty=1.1,  # a 135M model loops under pure greedy decoding; same for both sides
        pad_token_id=pad,
        eos_token_id=tokenizer.eos_token_id,
    )
    results = []
    for row in out[:, width:].tolist():
        stopped = tokenizer.eos_token_id in row
        row = row[: row.index(tokenizer.eos_token_id)] if stopped else row
        text = tokenizer.decode(row, skip_special_tokens=True)
        results.append({"text": text, "tokens": len(row), "stop": "eos" if stopped else "max_new_tokens"})
    return results


def think_shape(text: str) -> dict:
    """Does the output open with a thinking section, and does that section close?"""
    stripped = text.lstrip()
    return {"opens_think": stripped.startswith("<think>"), "closes_think": "</think>" in stripped}


def run_demo(cfg, n_questions: int = 2, max_new_tokens: int = 1024) -> dict:
    summary, model, tokenizer, data = run_training(cfg)
    out = Path(cfg.train.output_dir)
    held = data.val[:n_questions]
    prompts = [ex["input_ids"][: ex["prompt_tokens"]] for ex in held]
    print(f"\nGenerating answers to {len(prompts)} held-out questions, before and after (greedy, up to {max_new_tokens} tokens) ...", flush=True)
    with model.disable_adapter():
        before = generate(model, tokenizer, prompts, max_new_tokens)
    after = generate(model, tokenizer, prompts, max_new_tokens)
    items = []
    for ex, b, a in zip(held, before, after):
        items.append({"row": ex["row"], "question": ex["question"], "base": {**b, **think_shape(b["text"])}, "tuned": {**a, **think_shape(a["text"])}})
    result = {"heldout_loss_before": summary["eval_loss_start"], "heldout_loss_after": summary["eval_loss_end"], "questions": items}
    tmp = out / ".demo.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, out / "demo.json")
    print_demo(result, out)
    return result


def _clip(text: str) -> str:
    text = text.strip()
    if len(text) <= SHOW_CHARS:
        return text
    return text[:SHOW_CHARS] + f" [... {len(text) - SHOW_CHARS} more characters in demo.json]"


def print_demo(result: dict, out: Path) -> None:
    bar = "=" * 100
    for i, q in enumerate(result["questions"], start=1):
        print(f"\n{bar}\nHeld-out question {i} (row {q['row']} of the data file):\n{textwrap.fill(q['question'], 100)}")
        for side, label in (("base", "BEFORE (base model)"), ("tuned", "AFTER (fine-tuned)")):
            g = q[side]
            print(f"\n--- {label}: {g['tokens']} tokens, stopped on {g['stop']} ---\n{_clip(g['text'])}")
    print(f"\n{bar}\nHeld-out loss per token (lower is better): before {result['heldout_loss_before']:.4f}, after {result['heldout_loss_after']:.4f}")
    for i, q in enumerate(result["questions"], start=1):
        b, a = q["base"], q["tuned"]
        print(
            f"Question {i}: opens with <think>: before {_yn(b['opens_think'])}, after {_yn(a['opens_think'])}; "
            f"closes </think>: before {_yn(b['closes_think'])}, after {_yn(a['closes_think'])}"
        )
    print(f"Full outputs: {out / 'demo.json'}; loss curve: {out / 'loss_curve.png'}")


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"
