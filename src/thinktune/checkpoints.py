"""Checkpoints that are complete or ignored, and the disk space they will need.

The transformers Trainer writes `checkpoint-N/` file by file (adapter, optimizer, scheduler, RNG
states, trainer_state.json) with no sign of when it is done, so a process killed mid-save leaves a
folder that looks like a checkpoint and is not. After the Trainer returns from a save (and every
process has written its RNG state), the main process *seals* the folder: it writes
`thinktune_checkpoint.json` (atomically) listing every file with its size and sha256. `--resume`
only trusts sealed folders whose files still match their seal; anything else is reported and
skipped, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

from .atomic import write_json
from .errors import UserError

SEAL = "thinktune_checkpoint.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != SEAL)


def seal(folder: Path, extra: dict) -> None:
    """Record every file of a finished checkpoint (size, sha256) plus thinktune's own state."""
    files = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in _files(folder)}
    write_json(folder / SEAL, {"files": files, **extra})


def problem(folder: Path) -> str | None:
    """Why this checkpoint must not be loaded, or None when it is complete and unchanged."""
    seal_path = folder / SEAL
    if not seal_path.is_file():
        return "it was never finished (no seal: the process stopped while writing it)"
    try:
        files = json.loads(seal_path.read_text())["files"]
    except (ValueError, KeyError) as e:
        return f"its seal {SEAL} is unreadable ({e})"
    for name, want in files.items():
        p = folder / name
        if not p.is_file():
            return f"{name} is missing"
        if p.stat().st_size != want["bytes"]:
            return f"{name} has {p.stat().st_size:,} bytes, not the {want['bytes']:,} it was saved with (truncated)"
        if _sha256(p) != want["sha256"]:
            return f"{name} changed after it was saved (sha256 differs)"
    return None


def step_of(folder: Path) -> int:
    m = _CHECKPOINT.match(folder.name)
    return int(m.group(1)) if m else -1


def latest_complete(checkpoints: Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete checkpoint under `checkpoints/`, and the (folder, reason) of every
    newer or broken one that was passed over."""
    found = sorted((p for p in checkpoints.glob("checkpoint-*") if p.is_dir() and step_of(p) >= 0), key=step_of, reverse=True)
    skipped: list[tuple[Path, str]] = []
    for folder in found:
        why = problem(folder)
        if why is None:
            return folder, skipped
        skipped.append((folder, why))
    return None, skipped


def read_seal(folder: Path) -> dict:
    return json.loads((folder / SEAL).read_text())


def checkpoint_bytes(trainable_parameters: int, tokenizer_bytes: int) -> int:
    """Disk one checkpoint takes: the fp32 adapter, AdamW's two fp32 moments per trainable
    weight, the tokenizer files the Trainer copies in, and ~1 MB of state (scheduler, RNG, JSON)."""
    return trainable_parameters * 4 * 3 + tokenizer_bytes + (1 << 20)


def check_free_space(folder: Path, need: int, what: str) -> None:
    """Fail before training when the disk under `folder` cannot hold what the run will write."""
    free = shutil.disk_usage(folder).free
    if free < need:
        raise UserError(
            f"Not enough disk space in {folder}: {what} need about {need / 2**20:,.0f} MiB and only "
            f"{free / 2**20:,.0f} MiB are free. Free some space, write the run elsewhere (--out), or keep fewer "
            "checkpoints (train.save_total_limit, train.save_steps)."
        )


def raise_if_disk_full(folder: Path, last: Path | None, error: Exception, threshold: int = 64 << 20) -> None:
    """Turn a writer's failure on a (nearly) full disk into one clear error."""
    free = shutil.disk_usage(folder).free
    if free >= threshold:
        return
    kept = (
        f"The last complete checkpoint, {last}, is kept: free some space and run the same command with --resume."
        if last
        else ("No checkpoint had been completed, so nothing of this run was kept.")
    )
    raise UserError(
        f"The disk under {folder} is full ({free / 2**20:,.1f} MiB free) and writing the run failed ({type(error).__name__}: {str(error)[:200]}). {kept}"
    ) from error
