"""The rewards as GRPOTrainer calls them: one TRL reward function per component (so TRL logs each
one's mean and spread apart), all computed at once per batch by `Scorer`, which also logs the
step's accuracy / format / unparsed / cut rates and writes completions.jsonl every N steps."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .rewards import Completion, correctness, format_checks, format_reward, overlong_penalty, stated

COMPONENTS = ("correctness", "format", "stated", "length")  # TRL logs rewards/<name>/mean and /std


def weights(rl) -> list[float]:
    """The config's weight of each component, in COMPONENTS order (GRPOConfig.reward_weights)."""
    return [rl.correctness_weight, rl.format_weight, rl.stated_weight, rl.length_weight]


def component_rewards(c: Completion, options: dict[str, str], gold: str, limit: int, buffer: int) -> dict[str, float]:
    """Every component of one completion, by name."""
    return {
        "correctness": correctness(c, options, gold),
        "format": format_reward(c),
        "stated": stated(c, options),
        "length": overlong_penalty(c, limit, buffer),
    }


def total(rewards: dict[str, float], w: list[float]) -> float:
    """The weighted sum GRPO ranks a group by."""
    return sum(wi * rewards[name] for wi, name in zip(w, COMPONENTS))


@dataclass
class Scored:
    key: tuple
    columns: dict[str, list[float]]


class Scorer:
    """Reads each completion once per batch (`funcs()` are the views TRL calls, one per
    component). `stops`: the ids that end a completion (eos, pad); `write_rows` receives the
    completions.jsonl rows of every `every`-th step."""

    def __init__(self, tokenizer, rl, stops: set[int], write_rows: Callable[[list[dict]], None] | None = None):
        self.tokenizer, self.rl, self.stops, self.write_rows = tokenizer, rl, stops, write_rows
        self.w = weights(rl)
        self.last: Scored | None = None

    def funcs(self) -> list[Callable]:
        out = []
        for name in COMPONENTS:

            def view(prompts, completions, completion_ids, _name=name, **kw) -> list[float]:
                return self.score(prompts, completion_ids, kw)[_name]

            view.__name__ = name  # TRL names the logged reward by the function's __name__
            out.append(view)
        return out

    def completion(self, ids: list[int], opened: bool) -> Completion:
        ended = bool(ids) and ids[-1] in self.stops
        text = self.tokenizer.decode(ids[:-1] if ended else ids, skip_special_tokens=False)
        return Completion(text, opened, ended, len(ids))

    def score(self, prompts: list[str], completion_ids: list[list[int]], kw: dict[str, Any]) -> dict[str, list[float]]:
        state = kw.get("trainer_state")
        step = (state.global_step if state is not None else 0) + 1  # generated for the coming update
        key = (step, tuple(tuple(ids) for ids in completion_ids))
        if self.last is not None and self.last.key == key:
            return self.last.columns
        rows = []
        for i, ids in enumerate(completion_ids):
            c = self.completion(ids, kw["opened"][i])
            options = json.loads(kw["options"][i])
            r = component_rewards(c, options, kw["gold"][i], self.rl.max_completion_length, self.rl.overlong_buffer)
            rows.append((c, r))
        columns = {name: [r[name] for _, r in rows] for name in COMPONENTS}
        self.last = Scored(key, columns)
        log = kw.get("log_metric")
        if log is not None:
            for name, value in step_rates(rows).items():
                log(name, value)
        if self.write_rows is not None and (step == 1 or step % self.rl.completions_every == 0):
            self.write_rows([self.row(step, p, c, r, kw, i) for i, (p, (c, r)) in enumerate(zip(prompts, rows))])
        return columns

    def row(self, step: int, prompt: str, c: Completion, r: dict[str, float], kw: dict, i: int) -> dict:
        return {
            "step": step,
            "id": kw["id"][i],
            "prompt": prompt,
            "completion": c.text,
            "tokens": c.tokens,
            "ended": c.ended,
            "gold": kw["gold"][i],
            "rewards": r,
            "reward": round(total(r, self.w), 6),
        }


def step_rates(rows: list[tuple[Completion, dict[str, float]]]) -> dict[str, float]:
    """Shares over one step's completions: right, all format checks passed, answer unreadable,
    cut at the limit."""
    n = max(len(rows), 1)
    return {
        "accuracy": sum(r["correctness"] for _, r in rows) / n,
        "format_rate": sum(all(format_checks(c)) for c, _ in rows) / n,
        "unparsed_rate": sum(r["stated"] == 0.0 for _, r in rows) / n,
        "cut_rate": sum(not c.ended for c, _ in rows) / n,
    }


def append_rows(path: Path) -> Callable[[list[dict]], None]:
    """completions.jsonl, appended a step at a time (one line per completion)."""

    def write(rows: list[dict]) -> None:
        with path.open("a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    return write
