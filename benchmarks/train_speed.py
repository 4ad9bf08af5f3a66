"""Training speed and memory: the tutorial recipe, TRL's SFTTrainer defaults and thinktune, in one
session, on the same model, rows and optimizer steps (issue 4).

    make bench                                   # or: .venv/bin/python benchmarks/train_speed.py
    .venv/bin/python benchmarks/train_speed.py --repeats 1 --only tutorial_cover,thinktune

Every run is a fresh subprocess (so its peak RSS is its own) of one recipe on the demo model
(SmolLM2-135M), the first 64 English rows of ../shared/data/train/medical_o1_sft_en.json, 1 epoch,
batch 2 x accumulation 4 (8 optimizer steps), LoRA r16/alpha32 on q,v, lr 3e-4, fp32 unless the
row says bf16 (a CPU with native bf16 runs thinktune's default in bf16). Repeats are interleaved (all recipes once, then again) so that drift of the machine
spreads over every row. Columns:
- useful tok/s: the rows' own (non-pad) tokens the run processed, per second of trainer.train();
- positions/s: every position computed (pads included), per second;
- held-out: per-token loss of the answer (reasoning + response, thinktune's chat-template
  encoding) of 16 other rows, after the run, measured the same way for every recipe;
- MFU: 4 x (matrix parameters) x useful tokens / time, over the matrix rate of the precision the
  row used (fp32 or bf16), measured here at start (forward 2P + backward 2P per token: frozen
  weights get no weight gradients);
- ratios: against the tutorial (covering length) and TRL rows of the same precision, and against
  the tutorial in fp32 as a second column (issue 18).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "train" / "medical_o1_sft_en.json"
TRAIN_ROWS = int(os.environ.get("BENCH_TRAIN_ROWS", 64))  # smaller only to try the script out
HELDOUT_ROWS = 16
RECIPES = {
    "tutorial_512": "tutorial recipe, pad to 512 (what it does: cuts answers)",
    "tutorial_cover": "tutorial recipe, pad to cover the longest row",
    "tutorial_cover_bf16": "tutorial recipe, covering length, bf16 mixed precision (its fp16=True on a CPU)",
    "trl": "TRL SFTTrainer defaults (prompt/completion), bf16 off",
    "trl_bf16": "TRL SFTTrainer, true defaults (bf16 on)",
    "thinktune": "thinktune defaults (model.precision=auto)",
    "tt_fp32": "thinktune, model.precision=fp32",
    "tt_batched": "thinktune, whole batches of 2 (rows_per_pass=2, causal mask only)",
    "tt_grouping_only": "thinktune, head_on_labels off",
    "tt_packing": "thinktune + packing (block-diagonal mask)",
    "tt_bf16": "thinktune, model.precision=bf16 (autocast over fp32 base weights)",
    "tt_bf16w": "thinktune + frozen base weights in bf16 (model.cpu_bf16_weights=true)",
    "bare": "the model alone: rows one by one, head on labels, AdamW, no Trainer (a ceiling)",
}
# The tutorial's prompt (the popular R1 medical fine-tuning script, in spirit): plain text, the
# end written as the string "<|endoftext|>" (not SmolLM2's end token), labels = every input id.
TUTORIAL_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides further context.\n"
    "Write a response that appropriately completes the request.\n"
    "Before answering, think carefully about the question and create a step-by-step chain of thoughts "
    "to ensure a logical and accurate response.\n\n### Instruction:\nYou are a medical expert with advanced "
    "knowledge in clinical reasoning, diagnostics, and treatment planning.\nPlease answer the following "
    "medical question.\n\n### Question:\n{}\n\n### Response:\n<think>\n{}\n</think>\n{}<|endoftext|>"
)


class Counting:
    """Wraps a collator to count the tokens and positions every batch carries."""

    def __init__(self, collate):
        self.collate, self.tokens, self.positions = collate, 0, 0

    def __call__(self, examples):
        batch = self.collate(examples)
        self.tokens += int(batch["attention_mask"].sum())
        self.positions += batch["input_ids"].numel()
        return batch


def load_rows():
    rows = json.loads(DATA.read_text(encoding="utf-8"))
    return rows[:TRAIN_ROWS], rows[TRAIN_ROWS : TRAIN_ROWS + HELDOUT_ROWS]


def demo_model():
    import torch

    from thinktune.model import load_model, load_tokenizer, resolve

    source = resolve("smollm2-demo")
    return load_model(source, torch.float32, "cpu"), load_tokenizer(source)


def lora_config():
    from peft import LoraConfig

    return LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")


BF16_RECIPES = ("tutorial_cover_bf16", "trl_bf16", "tt_bf16", "tt_bf16w")  # skipped where bf16 is only emulated


def common_args(out: str) -> dict:
    return dict(
        output_dir=out,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=4,
        learning_rate=3e-4,
        num_train_epochs=1,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=42,
    )


def run_tutorial(train, length: int | None, out: str, bf16: bool = False) -> dict:
    from datasets import Dataset
    from peft import get_peft_model
    from transformers import Trainer, TrainingArguments, default_data_collator

    model, tok = demo_model()
    texts = [TUTORIAL_PROMPT.format(r["Question"], r["Complex_CoT"], r["Response"]) for r in train]
    length = length or max(len(tok(t)["input_ids"]) for t in texts)
    enc = tok(texts, padding="max_length", truncation=True, max_length=length)
    ds = Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": enc["input_ids"]})
    collate = Counting(default_data_collator)
    args = TrainingArguments(**common_args(out), bf16=bf16)
    trainer = Trainer(model=get_peft_model(model, lora_config()), args=args, train_dataset=ds, data_collator=collate)
    start = time.perf_counter()
    result = trainer.train()
    return dict(
        wall=time.perf_counter() - start,
        tokens=collate.tokens,
        positions=collate.positions,
        train_loss=result.training_loss,
        model=trainer.model,
        max_length=length,
        precision="bf16" if bf16 else "fp32",
    )


def run_trl(train, out: str, defaults: bool = False) -> dict:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tok = demo_model()
    ds = Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": r["Question"]}],
                "completion": [{"role": "assistant", "content": f"<think>\n{r['Complex_CoT']}\n</think>\n\n{r['Response']}"}],
            }
            for r in train
        ]
    )
    # TRL 1.16 defaults to bf16, which a CPU without native bf16 only emulates (hours for this
    # run): the `trl` row is fp32 like the tutorial's; `trl_bf16` keeps every SFTConfig default.
    args = SFTConfig(**common_args(out)) if defaults else SFTConfig(**common_args(out), bf16=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=lora_config())
    trainer.data_collator = collate = Counting(trainer.data_collator)
    start = time.perf_counter()
    result = trainer.train()
    return dict(
        wall=time.perf_counter() - start,
        tokens=collate.tokens,
        positions=collate.positions,
        train_loss=result.training_loss,
        model=trainer.model,
        max_length=trainer.args.max_length,
        precision="bf16" if args.bf16 else "fp32",
    )


def run_thinktune(train, sets: list[str], out: str) -> dict:
    from thinktune import config
    from thinktune.sft import train as sft_train

    cfg = config.load(
        None,
        [
            "model.name=smollm2-demo",
            f"data.path={DATA}",
            "data.limit=null",
            "data.val_fraction=0",
            "data.val_min_rows=0",
            "train.epochs=1",
            "train.save_steps=0",
            "train.logging_steps=1",
            "train.eval_steps=0",
            f"train.output_dir={out}/run",
            *sets,
        ],
    )
    result = sft_train(cfg, rows=train)
    summary, model, data = result.summary, result.model, result.data
    return dict(
        wall=summary["wall_seconds"],
        tokens=summary["tokens_trained"],
        positions=summary["positions_computed"],
        train_loss=summary["train_loss"],
        model=model,
        max_length=data.report.max_length,
        precision=summary["precision"],
    )


def run_bare(train, out: str) -> dict:
    """The least a LoRA epoch can cost with this model here: each row alone (no pad, causal
    kernel), the head on labelled positions only, an AdamW step every 8 rows; no Trainer, no
    logging, no data loader. What no recipe built on this model's forward can beat."""
    import torch
    from peft import get_peft_model

    from thinktune.config import DataConfig
    from thinktune.data import Collator, prepare
    from thinktune.speed import base_model, linear_cross_entropy

    torch.manual_seed(42)
    model, tok = demo_model()
    model = get_peft_model(model, lora_config()).train()
    examples = prepare(DataConfig(path=str(DATA), limit=None, val_fraction=0.0, val_min_rows=0), tok, 42, rows=train).train
    decoder, head, collate = base_model(model).model, base_model(model).lm_head, Collator(tok.pad_token_id)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-4, weight_decay=0.0)
    tokens, start = 0, time.perf_counter()
    for group in range(0, len(examples), 8):
        rows = [collate([e]) for e in examples[group : group + 8]]
        n_items = sum(int((b["labels"][:, 1:] != -100).sum()) for b in rows)
        for b in rows:
            hidden = decoder(input_ids=b["input_ids"]).last_hidden_state  # the decoder alone, no head
            linear_cross_entropy(hidden, head.weight, b["labels"], n_items).backward()
            tokens += b["input_ids"].numel()
        opt.step()
        opt.zero_grad(set_to_none=True)
    wall = time.perf_counter() - start
    return dict(
        wall=wall, tokens=tokens, positions=tokens, train_loss=None, model=model, max_length=max(len(e["input_ids"]) for e in examples), precision="fp32"
    )


def heldout(model, rows) -> float:
    from thinktune.config import DataConfig
    from thinktune.data import Collator, prepare
    from thinktune.evaluate.loss import heldout_loss
    from thinktune.model import load_tokenizer, resolve

    tok = load_tokenizer(resolve("smollm2-demo"))
    data = prepare(DataConfig(path=str(DATA), limit=None, val_fraction=0.0, val_min_rows=0), tok, 0, rows=rows)
    # one row at a time: the per-token loss does not depend on it, and no recipe's peak RSS is set
    # by this measurement's vocabulary-wide logits instead of by its training
    return heldout_loss(model, data.train, Collator(tok.pad_token_id), 1)["loss"]


def matrix_params(model) -> int:
    import torch

    from thinktune.speed import base_model

    base = base_model(model)
    linear = sum(m.weight.numel() for n, m in base.named_modules() if isinstance(m, torch.nn.Linear) and "lora_" not in n)
    return linear


def child(name: str) -> None:
    train, held = load_rows()
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as out:
        if name.startswith("tutorial"):
            r = run_tutorial(train, 512 if name == "tutorial_512" else None, out, bf16=name.endswith("bf16"))
        elif name.startswith("trl"):
            r = run_trl(train, out, defaults=name == "trl_bf16")
        elif name == "bare":
            r = run_bare(train, out)
        else:
            sets = {
                "thinktune": [],
                "tt_batched": ["train.rows_per_pass=2"],
                "tt_grouping_only": ["train.head_on_labels=false"],
                "tt_packing": ["train.packing=true"],
                "tt_bf16": ["model.precision=bf16"],
                "tt_bf16w": ["model.precision=bf16", "model.cpu_bf16_weights=true"],
                "tt_fp32": ["model.precision=fp32"],
            }[name]
            r = run_thinktune(train, sets, out)
        model = r.pop("model")
        r["heldout_loss"] = heldout(model.eval(), held)
        r["matrix_params"] = matrix_params(model)
    r["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("RESULT " + json.dumps(r), flush=True)


def matrix_rate(dtype_name: str, seconds: float = 3.0) -> float:
    import torch

    dtype = getattr(torch, dtype_name)
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    a @ b
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        n += 1
    return 2 * 2048**3 * n / (time.perf_counter() - start) / 1e9


def spread(values: list[float], fmt: str) -> str:
    med = statistics.median(values)
    if len(values) == 1:
        return format(med, fmt)
    return f"{format(med, fmt)} ({format(min(values), fmt)}-{format(max(values), fmt)})"


def useful_rate(runs: list[dict]) -> float | None:
    return statistics.median(r["tokens"] / r["wall"] for r in runs) if runs else None


def table(results: dict, rates: dict) -> str:
    """One row a recipe; ratios of medians within the row's precision, and against fp32's tutorial."""
    ref = {
        "tutorial": {"fp32": useful_rate(results.get("tutorial_cover", [])), "bf16": useful_rate(results.get("tutorial_cover_bf16", []))},
        "trl": {"fp32": useful_rate(results.get("trl", [])), "bf16": useful_rate(results.get("trl_bf16", []))},
    }
    lines = [
        "| recipe | precision | useful tok/s | x tutorial (cover), same precision | x TRL, same precision | x tutorial fp32 | positions/s | wall s | peak RSS GB | held-out loss | MFU (own precision) | max length |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in results.items():
        if not runs:
            continue
        precision = runs[0].get("precision", "fp32")
        useful = [r["tokens"] / r["wall"] for r in runs]
        rate = rates["bfloat16" if precision == "bf16" else "float32"] * 1e9
        mfu = [4 * r["matrix_params"] * r["tokens"] / r["wall"] / rate for r in runs]
        ratio = lambda ref, u=useful: f"{statistics.median(u) / ref:.2f}" if ref else "-"  # noqa: E731
        lines.append(
            f"| {RECIPES[name]} | {precision} | {spread(useful, '.1f')} | {ratio(ref['tutorial'][precision])} | {ratio(ref['trl'][precision])} | "
            f"{ratio(ref['tutorial']['fp32'])} | {spread([r['positions'] / r['wall'] for r in runs], '.1f')} | "
            f"{spread([r['wall'] for r in runs], '.1f')} | {spread([r['peak_rss_gb'] for r in runs], '.2f')} | "
            f"{spread([r['heldout_loss'] for r in runs], '.4f')} | {spread([100 * m for m in mfu], '.1f')}% | {runs[0]['max_length']} |"
        )
    return "\n".join(lines)


def machine(rates: dict) -> str:
    """The CPU, its bf16 capability and the measured matrix rates: what every figure depends on."""
    from thinktune.model import cpu_bf16_flags, cpu_has_native_bf16

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "unknown CPU")
    kind = f"native bf16 ({', '.join(cpu_bf16_flags())})" if cpu_has_native_bf16() else "no native bf16 (bf16 emulated)"
    return f"{model}, {os.cpu_count()} cores, {kind}; matrix rate fp32 {rates['float32']:.1f} GFLOP/s, bf16 {rates['bfloat16']:.1f} GFLOP/s"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="Runs of each recipe (median and min-max are reported).")
    p.add_argument("--only", default=",".join(RECIPES), help="Comma-separated recipes to run: " + ", ".join(RECIPES))
    p.add_argument("--once", default="", help="Comma-separated recipes run only once, after the first repeat of the others.")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="Folder for the JSON and Markdown results.")
    p.add_argument("--force-bf16", action="store_true", help="Run the bf16 row even on a CPU that only emulates bf16.")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child)
        return 0
    if not DATA.exists():
        print(f"benchmark data {DATA} is missing (../shared/data beside the project)", file=sys.stderr)
        return 2
    once = [n for n in args.once.split(",") if n]
    names = [n for n in args.only.split(",") if n and n not in once]
    unknown = [n for n in names + once if n not in RECIPES]
    if unknown:
        print(f"unknown recipe(s) {unknown}; choose from {list(RECIPES)}", file=sys.stderr)
        return 2
    rates = {d: matrix_rate(d) for d in ("float32", "bfloat16")}
    print("Machine: " + machine(rates), flush=True)
    from thinktune.model import cpu_has_native_bf16

    skip = [n for n in names + once if n in BF16_RECIPES]
    if skip and not cpu_has_native_bf16() and not args.force_bf16:
        names, once = [n for n in names if n not in skip], [n for n in once if n not in skip]
        print(
            f"Skipping {', '.join(skip)}: this CPU has no native bf16 (no AMX / AVX512-BF16), bf16 matrix products run at "
            f"{rates['bfloat16']:.2f} GFLOP/s against {rates['float32']:.1f} in fp32 (--force-bf16 runs them anyway).",
            flush=True,
        )
    results = {n: [] for n in names + once}
    total = len(names) * args.repeats + len(once)
    plan = [(k, n) for k in range(args.repeats) for n in names + (once if k == 0 else [])]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k, name in plan:
        print(f"[{len(sum(results.values(), [])) + 1}/{total}] {name} (repeat {k + 1}) ...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--child", name], capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode or line is None:
            print(proc.stdout[-2000:] + proc.stderr[-4000:], file=sys.stderr)
            return 1
        r = json.loads(line[7:])
        results[name].append(r)
        print(f"    {r['tokens'] / r['wall']:.1f} useful tok/s, {r['wall']:.1f} s, {r['peak_rss_gb']:.2f} GB, held-out {r['heldout_loss']:.4f}", flush=True)
        write_results(out, stamp, rates, results, done=len(sum(results.values(), [])), total=total)  # a stopped run keeps its rows
    print("\n" + table(results, rates))
    print(f"\nWritten to {out}/train_speed-{stamp}.json and .md")
    return 0


def write_results(out: Path, stamp: str, rates: dict, results: dict, done: int, total: int) -> None:
    from thinktune.atomic import write_text

    where = machine(rates)
    head = f"{where}; {done} of {total} runs\n\n"
    record = {"machine": where, "rates_gflops": rates, "runs_done": done, "runs_planned": total, "results": results}
    write_text(out / f"train_speed-{stamp}.json", json.dumps(record, indent=2))
    write_text(out / f"train_speed-{stamp}.md", head + table(results, rates) + "\n")


if __name__ == "__main__":
    sys.exit(main())
