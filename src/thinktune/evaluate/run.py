"""`thinktune eval`: a model (optionally + adapter) on a benchmark, or its held-out loss on a CoT file."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from ..data.encode import tokenize
from ..data.render import THINK_OPEN, opens_think, render_prompt
from ..data.validate import describe_problems, text_problem, turns_problem
from ..decoding import Decoding
from ..errors import DataError, UserError
from .bench import ANSWER_SUFFIX, CMB_ANSWER_SUFFIX, CMB_PROMPT, ENGLISH_PROMPT, load_bench, render_question
from .extract import extract_choice, split_think
from .generate import generate_all
from .stats import wilson_interval


def bench_prompts(tokenizer, items, fmt: str, ask_answer_line: bool) -> tuple[list[str], list[list[int]]]:
    """One user turn through the model's own template, no system prompt."""
    texts, ids = [], []
    for item in items:
        text = render_prompt(tokenizer, [{"role": "user", "content": render_question(item, fmt, ask_answer_line)}])
        texts.append(text)
        ids.append(tokenize(tokenizer, text))
    return texts, ids


def split_output(prompt_text: str, output: dict, tokenizer) -> dict:
    """Thinking and answer of one generation, with their token counts and the stop reason."""
    text = output["text"]
    think, answer, closed = split_think(THINK_OPEN + text if opens_think(prompt_text) else text)
    return {
        "prompt": prompt_text,
        "output": text,
        "think": think,
        "answer": answer,
        "closed_think": closed,
        "think_tokens": len(tokenize(tokenizer, think)) if think else 0,
        "answer_tokens": len(tokenize(tokenizer, answer)) if answer else 0,
        "output_tokens": output["tokens"],
        "stop": output["stop"],
        "forced_close": output.get("forced_close"),
    }


def score(item, prompt_text: str, output: dict, tokenizer) -> dict:
    """One predictions.jsonl row."""
    row = split_output(prompt_text, output, tokenizer)
    row["answer_text"] = row.pop("answer")
    letter, how = extract_choice(row["answer_text"], item.options)
    return {"id": item.id, **row, "extracted": letter, "how": how, "gold": item.gold, "gold_text": item.options[item.gold], "correct": letter == item.gold}


def summarize(preds: list[dict]) -> dict:
    """Accuracy with its 95% Wilson interval, format compliance and lengths, from predictions."""
    n = len(preds)
    correct = sum(p["correct"] for p in preds)
    lo, hi = wilson_interval(correct, n)
    think = [p["think_tokens"] for p in preds]
    answer = [p["answer_tokens"] for p in preds]
    return {
        "items": n,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "accuracy_ci95": [lo, hi],
        "unparsed_rate": sum(p["how"] == "unparsed" for p in preds) / n if n else 0.0,
        "ambiguous_rate": sum(p["how"] == "ambiguous" for p in preds) / n if n else 0.0,
        "limit_rate": sum(p["stop"] == "max_new_tokens" for p in preds) / n if n else 0.0,
        "loop_rate": sum(p["stop"] == "loop" for p in preds) / n if n else 0.0,
        "forced_close_rate": sum(bool(p.get("forced_close")) for p in preds) / n if n else 0.0,
        "limit_thinking_rate": sum(p["stop"] == "max_new_tokens" and not p["closed_think"] for p in preds)
        / max(1, sum(p["stop"] == "max_new_tokens" for p in preds)),
        "closed_think_rate": sum(p["closed_think"] for p in preds) / n if n else 0.0,
        "eos_rate": sum(p["stop"] == "eos" for p in preds) / n if n else 0.0,
        "think_tokens_mean": statistics.fmean(think) if n else 0.0,
        "think_tokens_median": statistics.median(think) if n else 0.0,
        "answer_tokens_mean": statistics.fmean(answer) if n else 0.0,
        "answer_tokens_median": statistics.median(answer) if n else 0.0,
    }


LIMIT_SHARE = 0.1  # more outputs than this cut off by the token limit, and a result opens with that fact


def limit_warning(*sides: tuple[str, dict]) -> str | None:
    """The first thing to read when more than a tenth of the outputs stopped at the token limit
    (issue 14: "base 25% -> fine-tuned 0%" once came from a budget too small to finish thinking),
    or were stopped in a loop. `sides`: (name, summary) pairs, e.g. ("", eval) or ("base", ...),
    ("fine-tuned", ...)."""
    warnings = []
    cut = [(name, s) for name, s in sides if s.get("limit_rate", 0.0) > LIMIT_SHARE]
    if cut:
        parts = [
            f"{s['limit_rate']:.0%} of the {name + ' ' if name else ''}outputs"
            + (f" ({s['limit_thinking_rate']:.0%} of those still thinking)" if s.get("limit_thinking_rate") else "")
            for name, s in cut
        ]
        limit = (cut[0][1].get("decoding") or {}).get("max_new_tokens")
        warnings.append(
            f"WARNING: {' and '.join(parts)} stopped at the token limit (--max-new-tokens {limit}) before they ended. An output cut off "
            "before its answer counts as wrong, so this score measures the budget as much as the model. Raise --max-new-tokens, or set "
            "a thinking budget (--max-thinking-tokens N, below --max-new-tokens) so that every output gets to answer."
        )
    loops = [f"{s['loop_rate']:.0%} of the {name + ' ' if name else ''}outputs" for name, s in sides if s.get("loop_rate", 0.0) > LIMIT_SHARE]
    if loops:
        warnings.append(
            f"WARNING: {' and '.join(loops)} wrote the same passage three times in a row and were stopped there (stop reason 'loop'); "
            "one stopped before its answer counts as wrong. Greedy decoding makes small reasoning models loop: DeepSeek advises "
            "sampling at --temperature 0.6 for R1 models, and a thinking budget (--max-thinking-tokens N) makes a looping thought answer."
        )
    return "\n\n".join(warnings) or None


def run_bench(model, tokenizer, bench: str, dec: Decoding, samples: int = 1, limit=None, seed=None, ask_answer_line=False, desc="eval"):
    """Generate and score; with samples > 1 (sampling), each sample is scored and summarised."""
    items, fmt = load_bench(bench, limit=limit, seed=seed)
    texts, ids = bench_prompts(tokenizer, items, fmt, ask_answer_line)
    all_preds, runs, speeds = [], [], []
    for k in range(samples):
        outputs, speed = generate_all(
            model, tokenizer, ids, Decoding(**{**dec.to_dict(), "seed": (dec.seed or 0) + k}), desc=desc if samples == 1 else f"{desc} sample {k + 1}/{samples}"
        )
        preds = [{**score(it, t, o, tokenizer), "sample": k} for it, t, o in zip(items, texts, outputs)]
        all_preds += preds
        runs.append(summarize(preds))
        speeds.append(speed)
    summary = summarize(all_preds) if samples > 1 else runs[0]
    if samples > 1:
        # The K samples of one item are not independent trials: the interval is for N items,
        # built from the mean accuracy, and the spread across samples is reported beside it.
        accs = [r["accuracy"] for r in runs]
        mean = statistics.fmean(accs)
        summary.update(
            items=len(items),
            correct=round(mean * len(items), 2),
            accuracy=mean,
            accuracy_ci95=list(wilson_interval(round(mean * len(items)), len(items))),
            samples=samples,
            accuracy_per_sample=accs,
            accuracy_mean=mean,
            accuracy_std=statistics.stdev(accs),
        )
    summary["generation_tokens_per_second"] = round(sum(s["tokens_per_second"] for s in speeds) / len(speeds), 1)
    summary["items_per_second"] = round(sum(s["items_per_second"] for s in speeds) / len(speeds), 3)
    template = (CMB_PROMPT if fmt == "cmb" else ENGLISH_PROMPT) + ((CMB_ANSWER_SUFFIX if fmt == "cmb" else ANSWER_SUFFIX) if ask_answer_line else "")
    summary.update(
        bench=bench,
        format=fmt,
        prompt_template=template,
        prompt_example=texts[0] if texts else "",
        ask_answer_line=ask_answer_line,
        decoding=dec.to_dict(),
        limit=limit,
        seed=seed,
    )
    return all_preds, summary


def heldout_file_rows(tokenizer, path: str) -> tuple[list[dict], int]:
    """Every row of a CoT file encoded as in training (none held out); over-long rows dropped.
    Returns the rows and how many were dropped."""
    from .. import config as config_mod
    from ..data import prepare

    cfg = config_mod.load(None, values={"data.path": path, "data.limit": None, "data.val_fraction": 0.0, "data.val_min_rows": 0})
    data = prepare(cfg.data, tokenizer)
    return data.train, data.report.dropped


def run_heldout_rows(run_dir: str, tokenizer) -> list[dict] | None:
    """The held-out rows of a thinktune run, rebuilt from its config (same data, seed, split);
    None when the run folder has no config or its data file is not reachable from here."""
    from ..data import prepare
    from ..run import run_config

    cfg = run_config(run_dir)
    if cfg is None:
        return None
    try:
        return prepare(cfg.data, tokenizer, cfg.train.seed).val
    except UserError:
        return None


def run_measure(run_dir: str | None) -> tuple[str, int]:
    """How a thinktune run measured its held-out loss: its precision and its rows per pass, from
    its summary.json, so the same batches in the same precision give its own numbers again on any
    machine (issue 11). fp32, 2 rows for anything else (a plain PEFT folder, an unfinished run)."""
    from ..run import run_summary

    summary = run_summary(run_dir)
    return summary.get("precision") or "fp32", summary.get("rows_per_pass") or 2


def rows_loss(model, tokenizer, rows: list[dict], precision: str = "fp32", batch_size: int = 2) -> dict:
    """Held-out loss of encoded rows; in bf16/fp16 under autocast, as the Trainer measured it
    during training (accelerate wraps the model's forward in autocast)."""
    import torch

    from ..data import Collator
    from ..model import half_dtype
    from .loss import heldout_loss

    device = next(model.parameters()).device.type
    half = half_dtype(precision)
    with torch.autocast(device_type=device, dtype=half or torch.float32, enabled=half is not None):
        return heldout_loss(model, rows, Collator(tokenizer.pad_token_id), batch_size=batch_size)


def heldout_file_loss(model, tokenizer, path: str) -> dict:
    """Mean per-token loss of the assistant part of a CoT file: the same rendering and masking
    as training, every row kept (none held out), over-long rows dropped and counted."""
    rows, dropped = heldout_file_rows(tokenizer, path)
    result = rows_loss(model, tokenizer, rows)
    result.update(file=path, rows=len(rows), rows_dropped=dropped)
    return result


PROMPT_FIELDS = ("prompt", "question", "Question")


def read_prompts(path: str) -> list[list[dict]]:
    """The prompt turns of every row of a `thinktune generate` input file, checked without a
    model (so bad input fails before one loads): a `prompt` (or `question` / `Question`) text, or a
    chat `messages` list (a trailing assistant turn is dropped). One DataError names every bad row."""
    from ..data.load import load_rows

    rows = load_rows(path)
    problems: dict[tuple[str, str], list[int]] = defaultdict(list)
    prompts = []
    for i, row in enumerate(rows, start=1):
        turns, problem = _row_prompt(row)
        if problem:
            problems[problem].append(i)
        prompts.append(turns)
    if problems:
        raise DataError(
            f"Input file {path}: {describe_problems(problems, len(rows))}. Rows are counted from 1. Each row needs a "
            "non-empty 'prompt', 'question' or 'Question' text, or a 'messages' list of {role: system|user|assistant, "
            "content: text} turns ending with a user turn (a last assistant turn is dropped); fix those rows."
        )
    return prompts


def _row_prompt(row: dict) -> tuple[list[dict], tuple[str, str] | None]:
    """One row's prompt turns, or the (field, problem) that keeps it from being a prompt."""
    msgs = row.get("messages")
    if msgs is not None:
        problem = turns_problem(msgs)
        if problem:
            return [], ("messages", problem)
        turns = msgs[:-1] if msgs[-1]["role"] == "assistant" else msgs
        if not turns or turns[-1]["role"] != "user":
            return [], ("messages", "does not end with a user turn (a last assistant turn aside)")
        return [{"role": m["role"], "content": m["content"]} for m in turns], None
    present = [k for k in PROMPT_FIELDS if k in row]
    if not present:
        return [], ("prompt", "missing (and no 'question', 'Question' or 'messages' field either)")
    kinds = {k: text_problem(True, row[k]) for k in present}
    good = next((k for k in present if kinds[k] is None), None)
    if good is None:
        return [], (present[0], kinds[present[0]] or "")
    return [{"role": "user", "content": row[good]}], None


def file_prompts(path: str, tokenizer, prompts: list[list[dict]] | None = None) -> tuple[list[str], list[list[int]]]:
    """The prompts of a file (see read_prompts; or those already read from it) rendered with
    the model's template, and their token ids."""
    texts = [render_prompt(tokenizer, turns) for turns in (read_prompts(path) if prompts is None else prompts)]
    return texts, [tokenize(tokenizer, t) for t in texts]


def generate_file(model, tokenizer, path: str, dec: Decoding, prompts: list[list[dict]] | None = None, partial=None) -> tuple[list[dict], dict]:
    """`thinktune generate`: one output row per input row, with thinking and answer split.
    `prompts`: what read_prompts(path) returned, when the caller checked the file before loading the model.
    `partial` (atomic.PartialRows): rows are saved as each batch finishes, and the rows an
    interrupted run of the same job saved are kept, not made again (issue 13)."""
    texts, ids = file_prompts(path, tokenizer, prompts)
    kept = partial.open() if partial is not None else {}
    rows = {n: r for n, r in kept.items() if 0 < n <= len(texts) and r.get("prompt") == texts[n - 1]}
    todo = [i for i in range(len(texts)) if i + 1 not in rows]

    def save(idx: list[int], batch: list[dict]) -> None:
        new = [{"row": todo[j] + 1, **split_output(texts[todo[j]], out, tokenizer)} for j, out in zip(idx, batch)]
        rows.update((r["row"], r) for r in new)
        if partial is not None:
            partial.add(new)

    _, speed = generate_all(model, tokenizer, [ids[i] for i in todo], dec, desc="generate", on_batch=save)
    return [rows[n] for n in range(1, len(texts) + 1)], {**speed, "rows_kept": len(texts) - len(todo)}


def generate_job(model: str, adapter: str | None, input_file: str, dec: Decoding) -> dict:
    """What makes two generate runs the same job: a rerun keeps the rows of an interrupted one only
    if the model, the adapter's weights, the input file and the decoding are the same."""
    from ..weights import ADAPTER_FILES

    weights = [p for p in (Path(adapter) / n for n in ADAPTER_FILES) if p.is_file()] if adapter else []
    stamp = [[str(w.resolve()), w.stat().st_size, w.stat().st_mtime_ns] for w in weights[:1]]
    source = Path(input_file).resolve()
    return {"model": model, "adapter": stamp, "input": [str(source), source.stat().st_size, source.stat().st_mtime_ns], "decoding": dec.to_dict()}
