"""Writes that are complete or absent: a crash never leaves a truncated file or folder behind."""

from __future__ import annotations

import glob
import json
import math
import os
import re
import shutil
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


# Scratch names carry the machine and the PID that made them: on a shared file system another
# machine's PID says nothing here, so only this machine's dead processes' leftovers are swept.
HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())  # no '-' inside: names split on it


def owner() -> str:
    return f"{HOST}-{os.getpid()}"


def stale(parent: Path, prefix: str) -> list[Path]:
    """What a killed process of this machine left under `prefix` + owner()."""
    mine = f"{prefix}{HOST}-"
    found = []
    for p in parent.glob(f"{glob.escape(mine)}*"):
        pid = p.name[len(mine) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
            found.append(p)
    return found


def sweep(parent: Path, prefix: str) -> None:
    """Remove what a killed process left: a merge killed mid-write strands a folder the size of the
    model (issue 13); the next write to the same place cleans it up."""
    for p in stale(parent, prefix):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)


@contextmanager
def temp_dir(parent: Path, prefix: str):
    """A fresh folder beside the target (same file system, so a rename can publish it), named with
    this process's PID; removed if the block fails, or by the next call if the process was killed."""
    parent.mkdir(parents=True, exist_ok=True)
    sweep(parent, prefix)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f"{prefix}{owner()}-"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the published folder should not be
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(new: Path, out: Path) -> None:
    """Put a finished folder in place; an old one is moved aside first and deleted only after."""
    old = None
    for left in stale(out.parent, f".{out.name}.old-"):
        if out.exists():
            shutil.rmtree(left, ignore_errors=True)
        else:  # killed between the two renames below: the old output comes back, then is replaced
            os.replace(left, out)
    if out.exists():
        old = out.with_name(f".{out.name}.old-{owner()}")
        os.replace(out, old)
    os.replace(new, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def temp_file(path: Path) -> Path:
    """The scratch name a file is written under before its rename into place (stale ones swept)."""
    sweep(path.parent, f".{path.name}.tmp-")
    return path.with_name(f".{path.name}.tmp-{owner()}")


def write_text(path: Path, text: str) -> None:
    tmp = temp_file(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a failed write leaves neither a half file nor its scratch copy
        raise


def standard(obj):
    """The object with NaN and inf floats as None: JSON has no such numbers, and Python's
    `NaN`/`Infinity` tokens break other readers (issue 13). Only a diverged run produces them."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: standard(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [standard(v) for v in obj]
    return obj


def dumps(obj, indent: int | None = None) -> str:
    """Standard JSON (see `standard`), non-ASCII text kept readable."""
    return json.dumps(standard(obj), indent=indent, ensure_ascii=False, allow_nan=False)


def write_json(path: Path, obj) -> None:
    write_text(path, dumps(obj, indent=2))


def write_jsonl(path: Path, rows: list[dict]) -> None:
    write_text(path, "".join(dumps(r) + "\n" for r in rows))


@contextmanager
def scratch_dir(parent: Path, prefix: str):
    """A temporary folder that is always removed at the end of the block."""
    with temp_dir(parent, prefix) as tmp:
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class PartialRows:
    """JSONL rows saved as they are made, in `.<name>.partial` beside the target, under a first line
    that names the job; a rerun of the same job keeps them and makes only the rest; `finish`
    writes the whole file in place (issue 13: an interrupted generate loses nothing)."""

    def __init__(self, out: Path, job: dict):
        self.out, self.job = out, job
        self.path = out.with_name(f".{out.name}.partial")
        self.kept: dict[int, dict] = {}  # row number -> row, from an earlier run of this job

    def open(self) -> dict[int, dict]:
        """The rows an interrupted run of the same job left; the file is started anew otherwise."""
        lines = self.path.read_text(encoding="utf-8", errors="replace").splitlines() if self.path.is_file() else []
        if lines and _json_or_none(lines[0]) == json.loads(dumps({"job": self.job})):  # as JSON has it: tuples are lists
            for line in lines[1:]:
                row = _json_or_none(line)
                if not isinstance(row, dict) or not isinstance(row.get("row"), int):
                    break  # the line a killed process cut short, and anything after it
                self.kept[row["row"]] = row
        write_jsonl(self.path, [{"job": self.job}, *(self.kept[k] for k in sorted(self.kept))])
        return self.kept

    def add(self, rows: list[dict]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write("".join(dumps(r) + "\n" for r in rows))
            f.flush()

    def finish(self, rows: list[dict]) -> None:
        write_jsonl(self.out, rows)
        self.path.unlink(missing_ok=True)


def _json_or_none(line: str):
    try:
        return json.loads(line)
    except ValueError:
        return None
