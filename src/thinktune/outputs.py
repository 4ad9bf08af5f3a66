"""What a command may write over (issue 13), one rule for every command that writes:

- never the source it reads, nor a folder that holds it (`merge RUNS/demo --out RUNS` is refused);
- a folder is replaced only if thinktune wrote everything in it: each folder thinktune publishes
  carries a manifest (MANIFEST) naming its entries, and any other entry (a user's file, another
  run) makes the folder untouchable, --overwrite or not;
- what thinktune wrote is replaced only with --overwrite;
- all of this, and that the place is writable, is checked before the expensive part (`claim`).

Folders are built beside the target and renamed into place when complete (`staged`, `publish`).
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .atomic import replace_dir, temp_dir, write_json
from .errors import UserError

MANIFEST = ".thinktune.json"  # {"kind": ..., "files": [...]}: the entries thinktune wrote into this folder


def manifest(folder: Path) -> dict | None:
    """The manifest of a folder thinktune published, or None (not ours, or unreadable)."""
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), list) else None


# A run folder published before manifests existed: its layout (run.py) names what thinktune wrote.
RUN_MARKERS = ("adapter_config.json", "config.yaml", "summary.json")
RUN_LAYOUT = {
    *RUN_MARKERS,
    *("adapter_model.safetensors", "metrics.jsonl", "loss_curve.png", "README.md", "demo.json", "checkpoints"),
    *("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja", "added_tokens.json"),
    *("vocab.json", "merges.txt", "tokenizer.model", "generation_config.json"),
}


def written(folder: Path) -> tuple[str, set[str]]:
    """What kind of output thinktune made this folder, and the entries it wrote there."""
    m = manifest(folder)
    if m is not None:
        return m.get("kind", "output"), set(m["files"])
    if all((folder / name).is_file() for name in RUN_MARKERS):
        return "run", RUN_LAYOUT
    return "output", set()


def foreign(folder: Path) -> list[str]:
    """The entries of a folder that thinktune did not write (all of them if it is not ours)."""
    ours = written(folder)[1]
    return [e for e in sorted(os.listdir(folder)) if e != MANIFEST and e not in ours]


def claim(out: Path, kind: str, overwrite: bool = False, sources: tuple = (), flag: str = "--out", ours=None) -> None:
    """Check, before any work, that `out` (a folder, or a file when kind is "file") may be written.
    A file is ours when `ours(path)` says so (its format carries thinktune's mark)."""
    target = out.resolve()
    for source in sources:
        if source is None or not Path(source).exists():
            continue  # a hub id or a benchmark's name is not a place this command could destroy
        s = Path(source).resolve()
        if target == s or target in s.parents:
            what = "is" if target == s else "holds"
            raise UserError(f"{flag} {out} {what} {source}, which this command reads: writing there would destroy it. Choose another {flag}.")
    if kind == "file":
        _claim_file(out, overwrite, flag, ours)
    else:
        _claim_folder(out, kind, overwrite, flag)
    _writable(target.parent, out, flag)


def _claim_file(out: Path, overwrite: bool, flag: str, ours) -> None:
    if out.is_dir():
        raise UserError(f"{flag} {out} is a folder; give the name of a file to write.")
    if out.exists() and ours is not None and not ours(out):
        raise UserError(f"{flag} {out} exists and was not written by thinktune, so it is never replaced, with --overwrite or without. Choose another {flag}.")
    if out.exists() and not overwrite:
        raise UserError(f"{flag} {out} already exists; pass --overwrite to replace it, or choose another {flag}.")


def generated_jsonl(path: Path) -> bool:
    """A `thinktune generate` output: its first row has the fields generate writes."""
    try:
        with path.open(encoding="utf-8") as f:
            first = json.loads(f.readline())
    except (OSError, ValueError):
        return False
    return isinstance(first, dict) and {"row", "prompt", "output", "stop"} <= first.keys()


def _claim_folder(out: Path, kind: str, overwrite: bool, flag: str) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"{flag} {out} is a file; give a folder (new or empty) for the {kind} output.")
    if not out.is_dir() or not any(out.iterdir()):
        return
    alien = foreign(out)
    if alien:
        listed = ", ".join(alien[:5]) + (f" and {len(alien) - 5} more" if len(alien) > 5 else "")
        raise UserError(
            f"{flag} {out} holds files thinktune did not write ({listed}), so it is never replaced, with --overwrite or without. "
            f"Choose a new or empty folder for {flag}."
        )
    if not overwrite:
        had = written(out)[0]
        raise UserError(f"{flag} {out} already holds a {had} written by thinktune; pass --overwrite to replace it, or choose another {flag}.")


def _writable(parent: Path, out: Path, flag: str) -> None:
    """Create the parent and write a probe file into it: permission bits do not tell for root, a
    read-only mount or a full quota, and the work must not run first (issue 13: a generate lost
    105 s of work this way)."""
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise UserError(f"Cannot write into {parent} for {flag} {out}: {e.strerror or e}. Choose a writable {flag}.") from e


def publish(work: Path, out: Path, kind: str) -> None:
    """Put a finished folder in place with its manifest. The target is checked again (a file may
    have been put there since `claim`): one not entirely ours is never replaced."""
    write_json(work / MANIFEST, {"kind": kind, "files": sorted(e for e in os.listdir(work) if e != MANIFEST)})
    if out.is_dir() and any(out.iterdir()) and foreign(out):
        raise UserError(f"{out} received files thinktune did not write ({', '.join(foreign(out)[:5])}) while this command ran; it was left as it is.")
    replace_dir(work, out)


@contextmanager
def staged(out: Path, kind: str):
    """A temporary folder beside `out` to build the output in; published when the block ends."""
    with disk_full_explained(out), temp_dir(out.resolve().parent, f".{out.name}.tmp-") as tmp:
        yield tmp
        publish(tmp, out, kind)


class DiskFull(UserError):
    """Writing an output failed for want of disk space."""

    def __init__(self, out: Path, cause: str):
        self.cause = cause
        super().__init__(
            f"The disk under {out.resolve().parent} is full: writing {out} failed ({cause}). "
            "Nothing half-written was left there; free some space or choose another --out, then run again."
        )


@contextmanager
def disk_full_explained(out: Path):
    """A writer that fails on a full disk, in its own words, becomes one clear error: safetensors
    says "I/O error: No space left on device (os error 28)" in a SafetensorError and torch.save
    "file write failed" in a RuntimeError, neither an OSError (issue 13: tracebacks). An inner
    output's (export's scratch merge) is told as this one's."""
    try:
        yield
    except DiskFull as e:
        raise DiskFull(out, e.cause) from None
    except Exception as e:
        text = str(e)
        full = (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or "No space left" in text or "os error 28" in text
        if isinstance(e, UserError) or not full:
            raise
        raise DiskFull(out, f"{type(e).__name__}: {text.splitlines()[0][:200]}") from None


def add_file(folder: Path, name: str, obj) -> None:
    """Write one more JSON file into a published folder and list it in the manifest."""
    write_json(folder / name, obj)
    m = manifest(folder) or {"kind": "output", "files": []}
    write_json(folder / MANIFEST, {**m, "files": sorted({*m["files"], name})})
