"""Plots written as PNG files (matplotlib, no screen needed)."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO


def loss_curve(records: list[dict], path: Path | BinaryIO, title: str = "") -> None:
    """Training loss per logged step and held-out loss per evaluation, on one chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    held = [(r["step"], r["eval_loss"]) for r in records if "eval_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train), marker=".", label="training loss")
    if held:
        ax.plot(*zip(*held), marker="o", label="held-out loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss per token")
    ax.set_title(title or "loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


REWARD_SERIES = (
    ("reward", "total reward (weighted)"),
    ("accuracy", "accuracy (correctness)"),
    ("format_rate", "format: all three checks"),
    ("cut_rate", "share cut at the limit"),
)


def reward_curve(records: list[dict], path: Path | BinaryIO, title: str = "") -> None:
    """RL (thinktune rl): the total reward, accuracy, format rate and the share of completions cut
    at the limit, per optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key, label in REWARD_SERIES:
        points = [(r["step"], r[key]) for r in records if r.get(key) is not None]
        if points:
            ax.plot(*zip(*points), marker=".", label=label)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("mean over the step's completions")
    ax.set_title(title or "reward")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
