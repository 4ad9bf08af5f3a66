"""Plots written as PNG files (matplotlib, no screen needed)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO


def _chart(series: list[tuple[list, str, str]], path: Path | BinaryIO, ylabel: str, title: str) -> None:
    """One chart over optimizer steps: each (points, marker, label) a line, drawn when it has points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for points, marker, label in series:
        if points:
            ax.plot(*zip(*points), marker=marker, label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def loss_curve(records: list[dict], path: Path | BinaryIO, title: str = "") -> None:
    """Training loss per logged step and held-out loss per evaluation, on one chart."""
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    held = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    _chart([(train, ".", "training loss"), (held, "o", "held-out loss")], path, "loss per token", title or "loss")


REWARD_SERIES = (
    ("reward", "total reward (weighted)"),
    ("accuracy", "accuracy (correctness)"),
    ("format_rate", "format: all three checks"),
    ("cut_rate", "share cut at the limit"),
)


def reward_curve(records: list[dict], path: Path | BinaryIO, title: str = "") -> None:
    """RL (thinktune rl): the total reward, accuracy, format rate and the share of completions cut
    at the limit, per optimizer step."""
    series = [([(r["step"], r[key]) for r in records if r.get(key) is not None], ".", label) for key, label in REWARD_SERIES]
    _chart(series, path, "mean over the step's completions", title or "reward")
