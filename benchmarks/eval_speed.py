"""Evaluation speed (issue 14): static batches (the code before issue 14) vs continuous batching vs
one prompt at a time, on the demo run and the same MedQA items, greedy, in one session.

    .venv/bin/python benchmarks/eval_speed.py                       # 32 items, 512 new tokens
    .venv/bin/python benchmarks/eval_speed.py --items 8 --max-new-tokens 64 --single-items 2

- static: `generate_static`, the code eval ran before issue 14: batches of 8 sorted by prompt
  length through `model.generate`, the adapter attached unfolded (PEFT), as `load_for_inference`
  gave it then. Each batch runs until its longest row ends.
- continuous: `generate_all` as eval runs it now: the adapter folded into the weights, rows
  leaving at their end token and waiting prompts taking their slots, `--batch-size` rows at once,
  fp32 weights packed for oneDNN on a CPU without native bf16. Loops are not stopped here (static
  batches cannot stop them), so every way generates the same tokens.
- single: the same engine one prompt at a time, on the first `--single-items` items (it is slow).

Greedy equality: each continuous output against the static output of the same item. Results go
to benchmarks/results/eval_speed-STAMP.{json,md}; the table says which CPU ran it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path


def machine() -> str:
    from thinktune.model import cpu_bf16_flags, pick_precision

    name = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    flags = cpu_bf16_flags()
    return f"{name}, {os.cpu_count()} cores, native bf16: {', '.join(flags) if flags else 'no'}; generation precision: {pick_precision('auto', 'cpu')}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/demo", help="The fine-tuned run (thinktune demo makes runs/demo).")
    ap.add_argument("--items", type=int, default=32, help="MedQA items (the first N).")
    ap.add_argument("--max-new-tokens", type=int, default=512, help="Generation budget per item, the same for every way.")
    ap.add_argument("--batch-size", type=int, default=32, help="Rows at once for continuous batching (static keeps today's 8).")
    ap.add_argument("--single-items", type=int, default=4, help="Items generated one at a time (0 to skip).")
    args = ap.parse_args()

    from thinktune.decoding import Decoding
    from thinktune.evaluate.bench import load_bench
    from thinktune.evaluate.generate import generate_all, generate_static
    from thinktune.evaluate.run import bench_prompts
    from thinktune.model import load_for_inference
    from thinktune.run import base_model_for

    base = base_model_for(None, args.run)
    items, fmt = load_bench("medqa", limit=args.items)
    rows = {}
    # loops run on to the limit in every way (static batches have no loop stop): the same tokens to generate
    dec = Decoding(max_new_tokens=args.max_new_tokens, temperature=0.0, top_p=1.0, stop_loops=False)
    model, tok = load_for_inference(base, args.run)  # unfolded, as before issue 14
    _, prompts = bench_prompts(tok, items, fmt, False)
    static, rows["static batches of 8 (before issue 14)"] = generate_static(model, tok, prompts, Decoding(**{**dec.to_dict(), "batch_size": 8}), desc="static")
    model, tok = load_for_inference(base, args.run, fold=True)
    cont, rows[f"continuous batching, {args.batch_size} rows"] = generate_all(
        model, tok, prompts, Decoding(**{**dec.to_dict(), "batch_size": args.batch_size}), desc="continuous"
    )
    if args.single_items:
        _, rows[f"one prompt at a time (first {args.single_items} items)"] = generate_all(
            model, tok, prompts[: args.single_items], Decoding(**{**dec.to_dict(), "batch_size": 1}), desc="single"
        )
    same = sum(a["text"] == b["text"] for a, b in zip(static, cont))
    base_rate = next(iter(rows.values()))["tokens_per_second"]
    lines = [
        f"Machine: {machine()}. Run {args.run} on {base}, {args.items} MedQA items, greedy, --max-new-tokens {args.max_new_tokens}.",
        "",
        "| way | generated tok/s | x static | wall s | items |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        items_done = round(r["items_per_second"] * r["seconds"])
        lines.append(f"| {name} | {r['tokens_per_second']} | {r['tokens_per_second'] / base_rate:.2f} | {r['seconds']} | {items_done} |")
    lines += ["", f"Greedy outputs equal to the static batches': {same} of {len(static)}."]
    diff = [(a["tokens"], b["tokens"]) for a, b in zip(static, cont) if a["text"] != b["text"]]
    if diff:
        lines.append(f"Differing items (static tokens, continuous tokens): {diff}.")
    text = "\n".join(lines) + "\n"
    print(text)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / f"eval_speed-{stamp}.md").write_text(text, encoding="utf-8")
    (out / f"eval_speed-{stamp}.json").write_text(
        json.dumps({"machine": machine(), "args": vars(args), "rows": rows, "equal": same}, indent=1), encoding="utf-8"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
