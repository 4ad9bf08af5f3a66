"""The one rule for what a command may write over (outputs.py), on real folders and files."""

import json
from pathlib import Path

import pytest

from thinktune.errors import UserError
from thinktune.outputs import MANIFEST, add_file, claim, foreign, generated_jsonl, manifest, publish, staged


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_never_the_source_nor_a_folder_holding_it(tmp_path):
    run = tmp_path / "runs" / "demo"
    run.mkdir(parents=True)
    with pytest.raises(UserError, match=r"--out .*runs holds .*demo, which this command reads: writing there would destroy it"):
        claim(tmp_path / "runs", "merged model", overwrite=True, sources=(run,))
    with pytest.raises(UserError, match=r"--out .*demo is .*demo, which this command reads"):
        claim(run, "merged model", overwrite=True, sources=(run,))
    claim(tmp_path / "runs" / "merged", "merged model", sources=(run, "medqa", None))  # a sibling, a name, nothing: fine


def test_a_folder_with_anything_thinktune_did_not_write_is_never_replaced(tmp_path):
    (tmp_path / "runs" / "other-run").mkdir(parents=True)
    (tmp_path / "runs" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match=r"holds files thinktune did not write \(notes.txt, other-run\), so it is never replaced, with --overwrite or without"):
        claim(tmp_path / "runs", "run", overwrite=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file; give a folder"):
        claim(tmp_path / "file", "evaluation", overwrite=True)
    claim(tmp_path / "empty", "run")  # absent
    (tmp_path / "empty").mkdir()
    claim(tmp_path / "empty", "run")  # empty


def test_what_thinktune_published_is_replaced_only_with_overwrite(tmp_path):
    out = tmp_path / "eval"
    with staged(out, "evaluation") as tmp:
        (tmp / "summary.json").write_text("{}")
    assert manifest(out) == {"kind": "evaluation", "files": ["summary.json"]} and foreign(out) == []
    with pytest.raises(UserError, match="already holds a evaluation written by thinktune; pass --overwrite"):
        claim(out, "evaluation")
    claim(out, "evaluation", overwrite=True)
    add_file(out, "demo.json", {"a": 1})  # a later file of the same command joins the manifest
    assert manifest(out)["files"] == ["demo.json", "summary.json"]
    (out / "my-notes.md").write_text("mine")  # the user adds a file: the folder is theirs now
    with pytest.raises(UserError, match=r"\(my-notes.md\)"):
        claim(out, "evaluation", overwrite=True)
    with pytest.raises(UserError, match="received files thinktune did not write"):
        with staged(out, "evaluation") as tmp:
            (tmp / "summary.json").write_text('{"new": 1}')
    assert (out / "summary.json").read_text() == "{}" and tree(tmp_path) == sorted(
        ["eval", *(f"eval/{n}" for n in [MANIFEST, "demo.json", "my-notes.md", "summary.json"])]
    )


def test_a_failed_block_publishes_nothing_and_leaves_no_temp(tmp_path):
    with pytest.raises(RuntimeError):
        with staged(tmp_path / "out", "comparison") as tmp:
            (tmp / "report.html").write_text("half")
            raise RuntimeError("generation failed")
    assert tree(tmp_path) == []


def test_files(tmp_path):
    (tmp_path / "x.gguf").mkdir()
    with pytest.raises(UserError, match="is a folder; give the name of a file"):
        claim(tmp_path / "x.gguf", "file", overwrite=True)
    (tmp_path / "a.jsonl").write_text("old")
    with pytest.raises(UserError, match="a.jsonl already exists; pass --overwrite"):
        claim(tmp_path / "a.jsonl", "file")
    claim(tmp_path / "a.jsonl", "file", overwrite=True)
    with pytest.raises(UserError, match="which this command reads"):
        claim(tmp_path / "a.jsonl", "file", overwrite=True, sources=(tmp_path / "a.jsonl",))


def test_an_unwritable_place_is_refused_up_front(tmp_path):
    with pytest.raises(UserError, match=r"Cannot write into /proc for --out /proc/out.jsonl: .*Choose a writable --out"):
        claim(Path("/proc/out.jsonl"), "file")  # refused even to root, which permission bits do not stop
    with pytest.raises(UserError, match=r"Cannot write into /proc/nope/deeper"):
        claim(Path("/proc/nope/deeper/run"), "run")
    assert tree(tmp_path) == []


def test_publish_lists_every_entry(tmp_path):
    work = tmp_path / "w"
    (work / "checkpoints").mkdir(parents=True)
    (work / "adapter_model.safetensors").write_bytes(b"x")
    publish(work, tmp_path / "run", "run")
    assert json.loads((tmp_path / "run" / MANIFEST).read_text()) == {"kind": "run", "files": ["adapter_model.safetensors", "checkpoints"]}


def test_a_file_is_replaced_only_if_its_format_says_thinktune_wrote_it(tmp_path):
    mine, ours = tmp_path / "train.jsonl", tmp_path / "gen.jsonl"
    mine.write_text('{"Question": "q", "Response": "r"}\n')
    ours.write_text('{"row": 1, "prompt": "p", "output": "o", "stop": "eos", "think": ""}\n')
    assert not generated_jsonl(mine) and generated_jsonl(ours) and not generated_jsonl(tmp_path / "absent.jsonl")
    with pytest.raises(UserError, match="train.jsonl exists and was not written by thinktune, so it is never replaced"):
        claim(mine, "file", overwrite=True, ours=generated_jsonl)
    claim(ours, "file", overwrite=True, ours=generated_jsonl)


def test_a_run_from_before_manifests_is_still_recognised(tmp_path):
    old = tmp_path / "run"
    old.mkdir()
    for name in ("adapter_config.json", "config.yaml", "summary.json", "adapter_model.safetensors", "tokenizer.json", "README.md"):
        (old / name).write_text("x")
    (old / "checkpoints").mkdir()
    with pytest.raises(UserError, match="already holds a run written by thinktune; pass --overwrite"):
        claim(old, "run")
    claim(old, "run", overwrite=True)
    (old / "todo.txt").write_text("mine")
    with pytest.raises(UserError, match=r"did not write \(todo.txt\)"):
        claim(old, "run", overwrite=True)
