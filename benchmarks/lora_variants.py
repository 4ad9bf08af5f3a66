"""LoRA variants on the demo (issue 15): held-out loss after the same wall time of training for
plain LoRA, DoRA, rsLoRA, PiSSA and LoRA+, in one session on one machine.

    .venv/bin/python benchmarks/lora_variants.py                 # 240 s of training each
    .venv/bin/python benchmarks/lora_variants.py --seconds 60    # a quick look

Every run is `examples/demo.yaml` (SmolLM2-135M-Instruct, all linear layers, r=16, lr 1e-3) with
one variant switched on, stopped at the first optimizer step that ends after --seconds of
training; the held-out loss (4 rows, per answer token) is measured before training and at that
stop. The schedule is the demo's (42 steps), so a faster variant gets more steps in the same time:
that is the comparison a user with a fixed budget makes. A variant that finishes the schedule
first stops there (on a CPU with native bf16 most do within 240 s; see benchmarks/README.md). Results go to
benchmarks/results/lora_variants-STAMP.{json,md}; the table says which CPU ran it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from eval_speed import machine
from transformers import TrainerCallback

VARIANTS = {
    "LoRA (plain)": [],
    "DoRA": ["lora.use_dora=true"],
    "rsLoRA": ["lora.use_rslora=true"],
    "PiSSA": ["lora.init=pissa"],
    "LoRA+ (ratio 16)": ["lora.loraplus_lr_ratio=16"],
}


class StopAfter(TrainerCallback):
    """Ends training at the first optimizer step that finishes after `seconds`."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, 0.0

    def on_train_begin(self, args, state, control, **kw):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        if time.perf_counter() - self.start >= self.seconds:
            control.should_training_stop = True


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=240, help="Training wall time per variant.")
    ap.add_argument("--out", default="/tmp/thinktune-lora-variants", help="Where the runs go (replaced).")
    ap.add_argument("--only", action="append", choices=list(VARIANTS), help="Run only this variant (repeatable), e.g. to repeat one.")
    args = ap.parse_args()

    from thinktune import config
    from thinktune.sft import train

    rows = {}
    for name, sets in VARIANTS.items():
        if args.only and name not in args.only:
            continue
        folder = Path(args.out) / name.split()[0].lower().replace("+", "plus")
        cfg = config.load("examples/demo.yaml", [f"train.output_dir={folder}", "train.eval_steps=0", "train.save_steps=0", *sets])
        s = train(cfg, on_event=lambda e: None, callbacks=[StopAfter(args.seconds)]).summary
        rows[name] = {k: s[k] for k in ("optimizer_steps", "wall_seconds", "eval_loss_start", "eval_loss_end", "tokens_per_second")}
        rows[name]["set"] = sets
        print(f"{name}: {rows[name]}", flush=True)

    plain = rows.get("LoRA (plain)", next(iter(rows.values())))
    lines = [
        f"Machine: {machine()}",
        f"Demo model, examples/demo.yaml, {args.seconds:g} s of training each, one session.",
        "",
        f"| variant | setting | steps | tokens/s | held-out before | held-out after | change vs {next(n for n, r in rows.items() if r is plain)} |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        delta = r["eval_loss_end"] - plain["eval_loss_end"]
        lines.append(
            f"| {name} | {' '.join(r['set']) or '(defaults)'} | {r['optimizer_steps']} | {r['tokens_per_second']:.0f} | "
            f"{r['eval_loss_start']:.4f} | {r['eval_loss_end']:.4f} | {delta:+.4f} |"
        )
    table = "\n".join(lines)
    print(table)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = Path(__file__).parent / "results"
    (results / f"lora_variants-{stamp}.json").write_text(json.dumps({"machine": machine(), "seconds": args.seconds, "rows": rows}, indent=2))
    (results / f"lora_variants-{stamp}.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
