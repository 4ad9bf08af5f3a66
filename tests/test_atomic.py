"""atomic.py: writes that are complete or absent, folders published by rename."""

import json
import os
import stat

import pytest

from thinktune.atomic import replace_dir, scratch_dir, temp_dir, write_json, write_jsonl, write_text


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_text_writes_utf8_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "report.md"
    write_text(path, "héllo ✓\n")
    assert path.read_bytes() == "héllo ✓\n".encode("utf-8")
    write_text(path, "second")  # replaces an existing file
    assert path.read_text(encoding="utf-8") == "second"
    assert leftovers(tmp_path) == ["report.md"]


def test_a_failed_write_leaves_no_scratch_file(tmp_path):
    target = tmp_path / "summary.json"
    target.mkdir()  # a folder in the way: the final rename fails
    with pytest.raises(OSError):
        write_text(target, "x")
    assert leftovers(tmp_path) == ["summary.json"] and target.is_dir()


def test_write_json_is_indented_and_keeps_non_ascii(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"loss": 1.25, "name": "医学", "rows": [1, 2]})
    assert path.read_text(encoding="utf-8") == '{\n  "loss": 1.25,\n  "name": "医学",\n  "rows": [\n    1,\n    2\n  ]\n}'
    assert json.loads(path.read_text(encoding="utf-8")) == {"loss": 1.25, "name": "医学", "rows": [1, 2]}


def test_write_json_that_fails_keeps_the_old_file(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"old": True})
    with pytest.raises(TypeError):
        write_json(path, {"new": object()})  # not serialisable: nothing may be written
    assert json.loads(path.read_text()) == {"old": True}
    assert leftovers(tmp_path) == ["summary.json"]


def test_write_jsonl_one_line_per_row(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl(path, [{"a": 1}, {"b": "ü"}])
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n{"b": "ü"}\n'
    write_jsonl(path, [])
    assert path.read_text() == ""


def test_temp_dir_is_beside_the_target_and_not_private(tmp_path):
    parent = tmp_path / "a" / "b"  # created if missing
    old = os.umask(0o022)
    try:
        with temp_dir(parent, ".tmp-") as tmp:
            assert tmp.parent == parent and tmp.name.startswith(".tmp-") and tmp.is_dir()
            assert stat.S_IMODE(tmp.stat().st_mode) == 0o755  # mkdtemp's 0o700 undone, umask respected
            (tmp / "f").write_text("x")
        os.umask(0o027)
        with temp_dir(parent, ".tmp-") as tmp2:
            assert stat.S_IMODE(tmp2.stat().st_mode) == 0o750
    finally:
        os.umask(old)
    assert (tmp / "f").read_text() == "x"  # kept after a block that succeeds
    assert sorted(p.name for p in parent.iterdir()) == sorted([tmp.name, tmp2.name])


def test_temp_dir_is_removed_when_the_block_fails(tmp_path):
    with pytest.raises(RuntimeError, match="boom"):
        with temp_dir(tmp_path, ".tmp-") as tmp:
            (tmp / "half-written").write_text("x")
            raise RuntimeError("boom")
    assert not tmp.exists() and leftovers(tmp_path) == []
    with pytest.raises(KeyboardInterrupt):  # also on Ctrl-C (a BaseException)
        with temp_dir(tmp_path, ".tmp-") as tmp:
            raise KeyboardInterrupt
    assert leftovers(tmp_path) == []


def test_replace_dir_publishes_a_new_folder_and_removes_the_old_one(tmp_path):
    out = tmp_path / "run"
    first = tmp_path / ".new1"
    first.mkdir()
    (first / "a.txt").write_text("one")
    replace_dir(first, out)
    assert leftovers(out) == ["a.txt"] and (out / "a.txt").read_text() == "one" and not first.exists()

    second = tmp_path / ".new2"
    second.mkdir()
    (second / "b.txt").write_text("two")
    replace_dir(second, out)
    assert leftovers(out) == ["b.txt"] and (out / "b.txt").read_text() == "two"
    assert leftovers(tmp_path) == ["run"]  # no .run.old-PID left behind


def test_scratch_dir_is_always_removed(tmp_path):
    with scratch_dir(tmp_path, ".scratch-") as tmp:
        (tmp / "x").write_text("x")
        assert tmp.parent == tmp_path and tmp.name.startswith(".scratch-")
    assert not tmp.exists()
    with pytest.raises(ValueError):
        with scratch_dir(tmp_path, ".scratch-") as tmp:
            raise ValueError
    assert not tmp.exists() and leftovers(tmp_path) == []


def dead_pid() -> int:
    """The PID of a process that has ended (a child reaped here)."""
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_what_a_killed_process_left_is_swept_by_the_next_write(tmp_path):
    """Issue 13: a merge killed mid-write stranded a hidden folder the size of the model."""
    from thinktune.atomic import HOST

    gone = f"{HOST}-{dead_pid()}"
    (tmp_path / f".m.tmp-{gone}-abc").mkdir()  # a killed merge's temp folder
    (tmp_path / f".m.tmp-{gone}-abc" / "model.safetensors").write_bytes(b"x" * 1000)
    (tmp_path / f".x.gguf.tmp-{gone}").write_bytes(b"half a gguf")  # a killed export's temp file
    (tmp_path / f".m.tmp-{HOST}-{os.getppid()}-live").mkdir()  # a live process's: left alone
    elsewhere = f".m.tmp-otherhost-{dead_pid()}-x"
    (tmp_path / elsewhere).mkdir()  # another machine's (shared disk): its PID says nothing here
    (tmp_path / ".m.tmp-notours").mkdir()  # not named by us: left alone
    with temp_dir(tmp_path, ".m.tmp-") as tmp:
        pass
    replace_dir(tmp, tmp_path / "m")
    write_text(tmp_path / "x.gguf", "done")
    assert leftovers(tmp_path) == sorted(["m", "x.gguf", f".m.tmp-{HOST}-{os.getppid()}-live", elsewhere, ".m.tmp-notours"])


def test_a_kill_between_the_two_renames_loses_nothing(tmp_path):
    from thinktune.atomic import HOST

    aside = tmp_path / f".run.old-{HOST}-{dead_pid()}"
    aside.mkdir()  # the old output, moved aside; then the kill
    (aside / "adapter.safetensors").write_text("old")
    assert not (tmp_path / "run").exists()
    new = tmp_path / ".new"
    new.mkdir()
    (new / "adapter.safetensors").write_text("new")
    replace_dir(new, tmp_path / "run")  # the old one comes back first, then is replaced as usual
    assert leftovers(tmp_path) == ["run"] and (tmp_path / "run" / "adapter.safetensors").read_text() == "new"


def test_json_is_standard_json(tmp_path):
    """Issue 13: a diverged run's NaN loss was written as the token NaN, which JSON has not."""
    write_jsonl(tmp_path / "m.jsonl", [{"loss": float("nan"), "lr": float("inf"), "step": 1, "x": [float("-inf"), 0.5]}])
    assert (tmp_path / "m.jsonl").read_text() == '{"loss": null, "lr": null, "step": 1, "x": [null, 0.5]}\n'
    write_json(tmp_path / "s.json", {"eval_loss_end": float("nan")})
    assert json.loads((tmp_path / "s.json").read_text()) == {"eval_loss_end": None}


def test_partial_rows_keep_what_an_interrupted_run_of_the_same_job_saved(tmp_path):
    from thinktune.atomic import PartialRows

    out = tmp_path / "gen.jsonl"
    first = PartialRows(out, {"model": "m", "seed": 0, "input": ("a.jsonl", 12)})  # a tuple, as JSON has it not
    assert first.open() == {}
    first.add([{"row": 2, "text": "b"}])
    first.add([{"row": 1, "text": "a"}])
    with first.path.open("a") as f:
        f.write('{"row": 3, "te')  # the line a kill cut short
    again = PartialRows(out, {"model": "m", "seed": 0, "input": ("a.jsonl", 12)})
    assert again.open() == {1: {"row": 1, "text": "a"}, 2: {"row": 2, "text": "b"}}
    assert not out.exists() and first.path.read_text().count("\n") == 3  # rewritten without the cut line
    other = PartialRows(out, {"model": "m", "seed": 1})  # another job: nothing of the first is kept
    assert other.open() == {}
    other.finish([{"row": 1, "text": "z"}])
    assert out.read_text() == '{"row": 1, "text": "z"}\n' and leftovers(tmp_path) == ["gen.jsonl"]
