"""Sealed checkpoints on real files: what --resume trusts, what it skips and why; disk checks."""

import json
import shutil

import pytest

from thinktune import checkpoints
from thinktune.cli import main
from thinktune.errors import UserError


def make(folder, step, files):
    ck = folder / f"checkpoint-{step}"
    ck.mkdir(parents=True)
    for name, data in files.items():
        (ck / name).write_bytes(data)
    return ck


def test_seal_lists_every_file_and_newest_complete_wins(tmp_path):
    a = make(tmp_path, 2, {"adapter_model.safetensors": b"a" * 10, "optimizer.pt": b"o" * 30})
    checkpoints.seal(a, {"step": 2, "tokens_seen": 77})
    b = make(tmp_path, 10, {"adapter_model.safetensors": b"b" * 10})
    checkpoints.seal(b, {"step": 10, "tokens_seen": 99})
    seal = json.loads((b / checkpoints.SEAL).read_text())
    assert seal["files"]["adapter_model.safetensors"]["bytes"] == 10 and seal["tokens_seen"] == 99
    assert set(json.loads((a / checkpoints.SEAL).read_text())["files"]) == {"adapter_model.safetensors", "optimizer.pt"}
    # numeric order, not text order: checkpoint-10 is newer than checkpoint-2
    assert checkpoints.latest_complete(tmp_path) == (b, [])


def test_unsealed_truncated_changed_and_missing_are_passed_over(tmp_path):
    good = make(tmp_path, 3, {"x.bin": b"1234"})
    checkpoints.seal(good, {"step": 3, "tokens_seen": 0})
    make(tmp_path, 12, {"x.bin": b"half"})  # killed before the seal
    cut = make(tmp_path, 9, {"x.bin": b"12345678"})
    checkpoints.seal(cut, {"step": 9, "tokens_seen": 0})
    (cut / "x.bin").write_bytes(b"1234")
    changed = make(tmp_path, 6, {"x.bin": b"abcd", "y.bin": b"y"})
    checkpoints.seal(changed, {"step": 6, "tokens_seen": 0})
    (changed / "x.bin").write_bytes(b"abce")
    gone = make(tmp_path, 5, {"x.bin": b"abcd", "y.bin": b"y"})
    checkpoints.seal(gone, {"step": 5, "tokens_seen": 0})
    (gone / "y.bin").unlink()
    (tmp_path / "checkpoint-notes").mkdir()  # not a checkpoint name: ignored
    last, skipped = checkpoints.latest_complete(tmp_path)
    assert last == good
    reasons = {p.name: why for p, why in skipped}
    assert list(reasons) == ["checkpoint-12", "checkpoint-9", "checkpoint-6", "checkpoint-5"]
    assert reasons["checkpoint-12"].startswith("it was never finished")
    assert reasons["checkpoint-9"] == "x.bin has 4 bytes, not the 8 it was saved with (truncated)"
    assert reasons["checkpoint-6"] == "x.bin changed after it was saved (sha256 differs)"
    assert reasons["checkpoint-5"] == "y.bin is missing"
    shutil.rmtree(good)
    assert checkpoints.latest_complete(tmp_path)[0] is None


def test_checkpoint_size_and_free_space(tmp_path):
    # 1,000 trainable fp32 weights: adapter + two AdamW moments = 12,000 bytes, plus tokenizer and 1 MiB
    assert checkpoints.checkpoint_bytes(1000, 500) == 12_000 + 500 + 2**20
    free = shutil.disk_usage(tmp_path).free
    checkpoints.check_free_space(tmp_path, free // 2, "the test")
    with pytest.raises(UserError, match=r"Not enough disk space in .*: 3 checkpoint\(s\) need about .* MiB and only .* MiB are free"):
        checkpoints.check_free_space(tmp_path, free + 2**40, "3 checkpoint(s)")


def test_out_below_a_file_fails_before_training(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code = main(["train", "--model", "smollm2-demo", "--out", str(tmp_path / "afile" / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Cannot write into" in err and "afile" in err and "Traceback" not in err


def test_resume_with_nothing_to_resume(tmp_path, capsys):
    code = main(["train", "--model", "smollm2-demo", "--out", str(tmp_path / "run"), "--resume"])
    err = capsys.readouterr().err
    assert code == 2 and f"Nothing to resume for {tmp_path / 'run'}" in err


def test_a_writer_failing_on_a_full_disk_becomes_one_clear_error(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    err = OSError(28, "No space left on device")
    checkpoints.raise_if_disk_full(tmp_path, None, err, threshold=free // 2)  # space left: not ours to explain
    last = tmp_path / "checkpoint-3"
    with pytest.raises(
        UserError, match=r"is full .* MiB free\) and writing the run failed \(OSError: .*No space left.*The last complete checkpoint, .*checkpoint-3, is kept"
    ):
        checkpoints.raise_if_disk_full(tmp_path, last, err, threshold=free + 2**40)
