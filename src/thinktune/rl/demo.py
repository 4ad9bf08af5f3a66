"""`thinktune rl --demo`: GRPO on the offline demo model, measured before and after.

The SFT demo's adapter (trained first if absent) is the start. A seeded sample of the benchmark's
items is held out; RL trains on the rest (the held-out questions removed by the contamination
filter, and counted), and both adapters answer the held-out items greedily with the same limit.
The table gives reward, format rate, unparsed rate and accuracy with 95% intervals.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from .. import config as config_mod
from ..console import Console
from ..decoding import Decoding
from ..evaluate.bench import Item
from ..evaluate.generate import generate_all
from ..evaluate.stats import Z95, wilson_interval
from ..outputs import add_file
from .grpo import check_adapter_base, train_rl
from .items import Items, load_items
from .rewards import Completion, format_checks
from .scoring import component_rewards, total, weights

HELD_SEED = 1234  # the held-out sample; RL's own seed (train.seed) orders the rest


def run_rl_demo(cfg, heldout: int = 48, sft_config: str = "examples/demo.yaml") -> dict:
    rl = cfg.rl
    sft = Path(rl.adapter) if rl.adapter else None
    if sft is not None and not (sft / "adapter_config.json").is_file():
        from ..sft import train

        print(f"No SFT adapter in {sft}: training the SFT demo first ({sft_config}).", flush=True)
        train(config_mod.load(sft_config, values={"train.output_dir": str(sft)}), on_event=Console())
    check_adapter_base(cfg)  # before minutes of measuring, not after
    held = load_items(rl.data, heldout, HELD_SEED)
    print(f"\nHeld out: {len(held.items)} items of {rl.data} (seed {HELD_SEED}), never trained on. Measuring the start ...", flush=True)
    before = measure(cfg, str(sft) if sft else None, held)
    result = train_rl(cfg, on_event=Console(), held={"held-out sample": held.items})
    print("\nMeasuring the RL adapter on the same held-out items ...", flush=True)
    after = measure(cfg, str(result.run_dir), held)
    out = {
        "heldout_items": len(held.items),
        "source": rl.data,
        "before": before["summary"],
        "after": after["summary"],
        "rows": {"before": before["rows"], "after": after["rows"]},
    }
    add_file(result.run_dir, "demo_rl.json", out)
    print("\n" + table(before["summary"], after["summary"], len(held.items)))
    print(f"Per-item outputs and rewards: {result.run_dir / 'demo_rl.json'}; reward curve: {result.run_dir / 'reward_curve.png'}")
    return out


def measure(cfg, adapter: str | None, held: Items) -> dict:
    """Greedy answers to the held-out items, scored by the training rewards."""
    from ..data.encode import tokenize
    from ..model import load_for_inference

    rl = cfg.rl
    model, tokenizer = load_for_inference(cfg.model.name, adapter, fold=True)
    texts = [held.rendered(tokenizer, i, rl.ask_answer_line) for i in held.items]
    dec = Decoding(max_new_tokens=rl.max_completion_length, temperature=0.0, repetition_penalty=rl.repetition_penalty, batch_size=16)
    outputs, _ = generate_all(model, tokenizer, [tokenize(tokenizer, t) for t in texts], dec, desc="held-out")
    rows = [score_output(item, text, o, rl) for item, text, o in zip(held.items, texts, outputs)]
    del model
    return {"rows": rows, "summary": summarize(rows)}


def score_output(item: Item, prompt: str, output: dict, rl) -> dict:
    from ..data.render import opens_think

    ended = output["stop"] == "eos"
    c = Completion(output["text"], opens_think(prompt), ended, output["tokens"] + ended)  # the end token counts, as in training
    r = component_rewards(c, item.options, item.gold, rl.max_completion_length, rl.overlong_buffer)
    return {"id": item.id, "output": c.text, "stop": output["stop"], "rewards": r, "reward": total(r, weights(rl)), "format_ok": all(format_checks(c))}


def summarize(rows: list[dict]) -> dict:
    n = len(rows)
    rewards = [r["reward"] for r in rows]
    half = Z95 * statistics.stdev(rewards) / math.sqrt(n) if n > 1 else math.nan
    mean = statistics.fmean(rewards) if rows else math.nan

    def rate(count: int) -> dict:
        lo, hi = wilson_interval(count, n)
        return {"rate": count / n if n else math.nan, "count": count, "ci95": [lo, hi]}

    return {
        "reward": {"mean": mean, "ci95": [mean - half, mean + half]},
        "format": rate(sum(r["format_ok"] for r in rows)),
        "unparsed": rate(sum(r["rewards"]["stated"] == 0.0 for r in rows)),
        "accuracy": rate(sum(r["rewards"]["correctness"] == 1.0 for r in rows)),
        "cut": rate(sum(r["stop"] != "eos" for r in rows)),
    }


def table(before: dict, after: dict, n: int) -> str:
    """The before/after table, each figure with its 95% interval, and whether the intervals part."""

    def cell(s: dict, key: str) -> str:
        if key == "reward":
            lo, hi = s["reward"]["ci95"]
            return f"{s['reward']['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        lo, hi = s[key]["ci95"]
        return f"{s[key]['rate']:6.1%} [{lo:.1%}, {hi:.1%}]"

    def apart(key: str) -> str:
        a, b = before[key]["ci95"], after[key]["ci95"]
        return "yes" if a[1] < b[0] or b[1] < a[0] else "no"

    lines = [f"Held-out items: {n} (greedy, the same completion limit); 95% intervals (Wilson for rates, normal for the mean reward).", ""]
    lines.append(f"{'':18s}{'before (SFT)':>28s}{'after (SFT + RL)':>28s}   intervals apart")
    for key, label in (
        ("reward", "reward (weighted)"),
        ("format", "format rate"),
        ("unparsed", "unparsed rate"),
        ("accuracy", "accuracy"),
        ("cut", "cut at the limit"),
    ):
        lines.append(f"{label:18s}{cell(before, key):>28s}{cell(after, key):>28s}   {apart(key)}")
    return "\n".join(lines)
