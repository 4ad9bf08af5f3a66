"""`thinktune demo`: fine-tune the offline demo model, then show base vs tuned on held-out questions."""

from __future__ import annotations

import textwrap
from pathlib import Path

from .console import Console
from .decoding import Decoding
from .evaluate.generate import generate_all
from .outputs import add_file
from .sft import train

SHOW_CHARS = 1200  # characters of each answer printed; the full text goes to demo.json


def think_shape(text: str) -> dict:
    """Does the output open with a thinking section, and does that section close?"""
    stripped = text.lstrip()
    return {"opens_think": stripped.startswith("<think>"), "closes_think": "</think>" in stripped}


def run_demo(cfg, n_questions: int = 2, max_new_tokens: int = 1024) -> dict:
    trained = train(cfg, on_event=Console())
    summary, model, tokenizer, data = trained.summary, trained.model, trained.tokenizer, trained.data
    out = Path(cfg.train.output_dir)
    held = data.val[:n_questions]
    prompts = [ex["input_ids"][: ex["prompt_tokens"]] for ex in held]
    print(f"\nGenerating answers to {len(prompts)} held-out questions, before and after (greedy, up to {max_new_tokens} tokens) ...", flush=True)
    # Greedy; a 135M model loops under pure greedy decoding, so both sides get the same mild
    # repetition penalty.
    dec = Decoding(max_new_tokens=max_new_tokens, temperature=0.0, repetition_penalty=1.1, batch_size=len(prompts))
    with model.disable_adapter():
        before, _ = generate_all(model, tokenizer, prompts, dec, desc="base model")
    after, _ = generate_all(model, tokenizer, prompts, dec, desc="fine-tuned")
    items = []
    for ex, b, a in zip(held, before, after):
        items.append({"row": ex["row"], "question": ex["question"], "base": {**b, **think_shape(b["text"])}, "tuned": {**a, **think_shape(a["text"])}})
    result = {"heldout_loss_before": summary["eval_loss_start"], "heldout_loss_after": summary["eval_loss_end"], "questions": items}
    add_file(out, "demo.json", result)  # listed in the run's manifest: a later --overwrite may replace it
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
    if result["heldout_loss_before"] is not None:
        print(f"\n{bar}\nHeld-out loss per token (lower is better): before {result['heldout_loss_before']:.4f}, after {result['heldout_loss_after']:.4f}")
    for i, q in enumerate(result["questions"], start=1):
        b, a = q["base"], q["tuned"]
        print(
            f"Question {i}: opens with <think>: before {_yn(b['opens_think'])}, after {_yn(a['opens_think'])}; closes </think>: before {_yn(b['closes_think'])}, after {_yn(a['closes_think'])}"
        )
    print(f"Full outputs: {out / 'demo.json'}; loss curve: {out / 'loss_curve.png'}")


def _yn(flag: bool) -> str:
    return "yes" if flag else "no"
