"""Issue 13's corpus of bad input, over every subcommand: one row per case (the command, the input
it is given, the exit code, words the message must hold), each run through the real `thinktune`
entry point (cli.main) in this process. For every row: no Python traceback, the words are there,
and nothing in the workspace was written, changed or left behind (temp files included)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, short_cot
from thinktune.cli import main

# Each row: (id, argv with {placeholders} from the workspace, exit code, words that must appear in
# the output (stderr, or stdout for a warning), needs). `needs` "disk" = a 40 MiB tmpfs (root only).
T = ["--model", "smollm2-demo", "--data", "{data}", "--set", "data.limit=6", "--set", "train.epochs=1", "--out", "{ws}/new-run"]
ROWS = [
    # --- data loss and corruption -----------------------------------------------------------
    ("merge-over-the-runs-folder", ["merge", "{runs}/demo", "--out", "{runs}", "--overwrite"], 2, ["holds", "which this command reads"], ""),
    ("merge-over-a-users-folder", ["merge", "{runs}/demo", "--out", "{mine}", "--overwrite"], 2, ["did not write (notes.txt)"], ""),
    ("merge-out-is-the-run", ["merge", "{runs}/demo", "--out", "{runs}/demo", "--overwrite"], 2, ["which this command reads"], ""),
    ("eval-over-a-users-folder", ["eval", "--model", "smollm2-demo", "--out", "{mine}", "--overwrite", "--limit", "1"], 2, ["did not write"], ""),
    ("compare-over-the-run", ["compare", "--adapter", "{runs}/demo", "--out", "{runs}/demo", "--overwrite"], 2, ["which this command reads"], ""),
    ("demo-over-a-users-folder", ["demo", "--out", "{mine}", "--set", "data.path={data}"], 2, ["did not write"], ""),
    ("train-over-a-users-folder", ["train", *T[:-2], "--out", "{mine}", "--overwrite"], 2, ["did not write"], ""),
    ("train-lr-inf", ["train", *T, "--set", "train.lr=inf"], 2, ["'train.lr' must be a finite number"], ""),
    ("train-lr-flag-nan", ["train", *T, "--lr", "nan"], 2, ["must be a finite number"], ""),
    (
        "generate-out-a-folder",
        ["generate", "--model", "smollm2-demo", "--input", "{prompts}", "--out", "{mine}"],
        2,
        ["is a folder; give the name of a file"],
        "",
    ),
    ("generate-out-read-only", ["generate", "--model", "smollm2-demo", "--input", "{prompts}", "--out", "/proc/out.jsonl"], 2, ["Cannot write into /proc"], ""),
    (
        "generate-over-a-users-file",
        ["generate", "--model", "smollm2-demo", "--input", "{prompts}", "--out", "{taken}", "--overwrite"],
        2,
        ["not written by thinktune"],
        "",
    ),
    (
        "generate-over-its-output",
        ["generate", "--model", "smollm2-demo", "--input", "{prompts}", "--out", "{ws}/generated.jsonl"],
        2,
        ["already exists; pass --overwrite"],
        "",
    ),
    (
        "generate-out-is-input",
        ["generate", "--model", "smollm2-demo", "--input", "{prompts}", "--out", "{prompts}", "--overwrite"],
        2,
        ["which this command reads"],
        "",
    ),
    (
        "nothing-to-learn",
        ["train", *T, "--set", "data.max_length=8", "--set", "data.overflow=truncate"],
        2,
        ["is cut inside its prompt at max_length 8", "no token of any row would be trained"],
        "",
    ),
    # --- tracebacks that are one paragraph now ----------------------------------------------
    ("yaml-not-utf8", ["data", "check", "--config", "{ws}/latin1.yaml"], 2, ["is not UTF-8 text"], ""),
    ("yaml-a-list-with-set", ["data", "check", "--config", "{ws}/list.yaml", "--set", "train.lr=1"], 2, ["expected a mapping of sections", "got a list"], ""),
    ("lora-dropout-2", ["train", *T, "--set", "lora.dropout=2"], 2, ["'lora.dropout' must be in [0, 1)"], ""),
    ("max-length-cap-0", ["train", *T, "--set", "data.max_length_cap=0"], 2, ["'data.max_length_cap' must be at least 8"], ""),
    ("target-modules-numbers", ["train", *T, "--set", "lora.target_modules=[1,2]"], 2, ["'lora.target_modules' must be module names"], ""),
    ("target-modules-empty", ["train", *T, "--set", "lora.target_modules=[]"], 2, ["'lora.target_modules' must name at least one module"], ""),
    ("max-grad-norm-negative", ["train", *T, "--set", "train.max_grad_norm=-1"], 2, ["'train.max_grad_norm' must be at least 0"], ""),
    ("lora-alpha-negative", ["train", *T, "--set", "lora.alpha=-5"], 2, ["'lora.alpha' must be at least 1"], ""),
    ("val-fraction-0.9", ["train", *T, "--set", "data.val_fraction=0.9"], 2, ["'data.val_fraction' must be in [0, 0.5]"], ""),
    ("demo-bad-setting", ["demo", "--set", "lora.dropout=2"], 2, ["'lora.dropout' must be in [0, 1)"], ""),
    ("lone-surrogate-data", ["data", "check", "--model", "smollm2-demo", "--data", "{ws}/surrogate.json"], 2, ["row 3", "lone UTF-16 surrogate"], ""),
    ("lone-surrogate-train", ["train", *T[:2], "--data", "{ws}/surrogate.json", "--out", "{ws}/new-run"], 2, ["row 3", "lone UTF-16 surrogate"], ""),
    (
        "lone-surrogate-generate",
        ["generate", "--model", "smollm2-demo", "--input", "{ws}/surrogate-prompt.jsonl", "--out", "{ws}/g.jsonl"],
        2,
        ["lone UTF-16 surrogate"],
        "",
    ),
    ("json-200000-deep", ["data", "check", "--model", "smollm2-demo", "--data", "{ws}/deep.json"], 2, ["nested too deeply"], ""),
    (
        "messages-malformed",
        ["generate", "--model", "smollm2-demo", "--input", "{ws}/bad-messages.jsonl", "--out", "{ws}/g.jsonl"],
        2,
        ["turn 1 has no 'content'"],
        "",
    ),
    (
        "control-characters",
        ["data", "check", "--model", "smollm2-demo", "--data", "{ws}/control.json"],
        0,
        ["control characters (NUL, BEL) in 'Response': row 2"],
        "",
    ),
    ("plan-memory-nan", ["plan", "--memory", "nan"], 2, ["--memory must be a finite positive number"], ""),
    ("plan-memory-1e308", ["plan", "--memory", "1e308"], 2, ["--memory must be a finite positive number"], ""),
    ("eval-temperature-negative", ["eval", "--model", "smollm2-demo", "--temperature", "-1", "--out", "{ws}/e"], 2, ["temperature 0 (greedy) or more"], ""),
    ("eval-top-p-0", ["eval", "--model", "smollm2-demo", "--top-p", "0", "--out", "{ws}/e"], 2, ["top p in (0, 1]"], ""),
    ("eval-out-a-file", ["eval", "--model", "smollm2-demo", "--out", "{taken}"], 2, ["is a file; give a folder"], ""),
    ("compare-out-a-file", ["compare", "--adapter", "{runs}/demo", "--out", "{taken}"], 2, ["is a file; give a folder"], ""),
    ("merge-out-a-file", ["merge", "{runs}/demo", "--out", "{taken}"], 2, ["is a file; give a folder"], ""),
    ("export-out-a-gguf-folder", ["export", "gguf", "{runs}/demo", "--out", "{ws}/folder.gguf"], 2, ["is a folder; give the name of a file"], ""),
    (
        "export-over-a-gguf",
        ["export", "gguf", "{runs}/demo", "--out", "{ws}/old.gguf", "--overwrite"],
        2,
        ["old.gguf exists and was not written by thinktune"],
        "",
    ),
    (
        "eval-temperature-inf",
        ["eval", "--model", "smollm2-demo", "--temperature", "inf", "--out", "{ws}/e"],
        2,
        ["temperature 0 (greedy) or more and finite"],
        "",
    ),
    ("train-out-holds-the-data", ["train", *T[:2], "--data", "{ws}/mine/notes.txt", "--out", "{ws}/mine", "--overwrite"], 2, ["which this command reads"], ""),
    ("export-not-a-model", ["export", "gguf", "{mine}", "--out", "{ws}/x.gguf"], 2, ["neither a thinktune run folder nor a merged model folder"], ""),
    (
        "adapter-garbage-eval",
        ["eval", "--adapter", "{ws}/garbage-run", "--out", "{ws}/e", "--limit", "1"],
        2,
        ["adapter_model.safetensors is damaged or incomplete"],
        "",
    ),
    ("adapter-garbage-chat", ["chat", "--adapter", "{ws}/garbage-run"], 2, ["adapter_model.safetensors is damaged or incomplete"], ""),
    ("adapter-garbage-merge", ["merge", "{ws}/garbage-run", "--out", "{ws}/m"], 2, ["adapter_model.safetensors is damaged or incomplete"], ""),
    (
        "model-garbage-safetensors",
        ["generate", "--model", "{ws}/garbage-model", "--input", "{prompts}", "--out", "{ws}/g.jsonl"],
        2,
        ["model.safetensors is damaged"],
        "",
    ),
    ("model-unsafe-pickle", ["generate", "--model", "{ws}/pickle-model", "--input", "{prompts}", "--out", "{ws}/g.jsonl"], 2, ["a pickle can run code"], ""),
    ("merge-onto-another-base", ["merge", "{ws}/other-base-run", "--out", "{ws}/m"], 2, ["does not fit the base model", "config.yaml names"], ""),
    (
        "eval-onto-another-base",
        ["eval", "--model", "{tiny}", "--adapter", "{runs}/demo", "--out", "{ws}/e"],
        2,
        ["does not fit the base model", "give --model"],
        "",
    ),
    ("merge-onto-a-full-disk", ["merge", "{runs}/demo", "--out", "{disk}/m"], 2, ["is full: writing", "Nothing half-written"], "disk"),
    ("export-onto-a-full-disk", ["export", "gguf", "{runs}/demo", "--out", "{disk}/x.gguf"], 2, ["is full: writing", "x.gguf failed"], "disk"),
]
SUBCOMMANDS = {"train", "plan", "data", "eval", "compare", "generate", "merge", "export", "chat", "demo"}


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root (hidden ones too) with its size and modification time."""
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture(scope="module")
def ws(tmp_path_factory, smoke_run, tiny_qwen2_dir):
    """The workspace every row runs against: a real run among other runs, a folder of the user's,
    a file in the way, and one broken input per case."""
    root = tmp_path_factory.mktemp("bad-input")
    runs = root / "runs"
    shutil.copytree(smoke_run[1], runs / "demo")
    (runs / "other-run").mkdir()
    (root / "mine").mkdir()
    (root / "mine" / "notes.txt").write_text("the user's own notes")
    (root / "taken.jsonl").write_text("someone's file\n")
    (root / "generated.jsonl").write_text(json.dumps({"row": 1, "prompt": "p", "output": "o", "stop": "eos"}) + "\n")  # an earlier generate's
    (root / "folder.gguf").mkdir()
    (root / "old.gguf").write_bytes(b"GGUF an earlier export")
    rows = short_cot(json.loads((ROOT / "examples" / "data" / "medical_o1_en_sample.json").read_text(encoding="utf-8")))[:8]
    (root / "data.json").write_text(json.dumps(rows))
    (root / "prompts.jsonl").write_text(json.dumps({"prompt": "What causes anemia?"}) + "\n")
    (root / "latin1.yaml").write_bytes('model:\n  name: "caf\xe9"\n'.encode("latin-1"))
    (root / "list.yaml").write_text("- a\n- b\n")
    (root / "surrogate.json").write_text(json.dumps([*rows[:2], {**rows[2], "Question": "bad \ud800 here"}, *rows[3:]]))
    (root / "surrogate-prompt.jsonl").write_text(json.dumps({"prompt": "bad \ud800"}) + "\n")
    (root / "deep.json").write_text("[" * 200_000 + "]" * 200_000)
    (root / "bad-messages.jsonl").write_text(json.dumps({"messages": [{"role": "user"}]}) + "\n")
    (root / "control.json").write_text(json.dumps([rows[0], {**rows[1], "Response": rows[1]["Response"] + " \x00\x07"}, *rows[2:]]))
    garbage = shutil.copytree(runs / "demo", root / "garbage-run")
    (garbage / "adapter_model.safetensors").write_bytes((garbage / "adapter_model.safetensors").read_bytes()[:1000])
    model = shutil.copytree(tiny_qwen2_dir, root / "garbage-model")
    (model / "model.safetensors").write_bytes(os.urandom(4096))
    pickle = shutil.copytree(tiny_qwen2_dir, root / "pickle-model")
    from safetensors.torch import load_file

    torch.save({**load_file(pickle / "model.safetensors"), "extra": Path("/etc")}, pickle / "pytorch_model.bin")  # a pickle of more than tensors
    (pickle / "model.safetensors").unlink()
    other = shutil.copytree(runs / "demo", root / "other-base-run")
    (other / "config.yaml").write_text((other / "config.yaml").read_text().replace("name: smollm2-demo", f"name: {tiny_qwen2_dir}"))
    return root


@pytest.fixture(scope="module")
def disk(ws):
    """A 40 MiB file system, too small for a merged model (root mounts a tmpfs; CI runs as root)."""
    mount = ws.parent / (ws.name + "-disk")
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mount)]).returncode != 0:
        pytest.skip("a small file system needs root (mount -t tmpfs)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_the_corpus_covers_every_subcommand():
    assert {argv[0] for _, argv, *_ in ROWS} == SUBCOMMANDS
    assert len({name for name, *_ in ROWS}) == len(ROWS)


@pytest.mark.parametrize("name,argv,code,words,needs", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input(name, argv, code, words, needs, ws, request, capsys, tiny_qwen2_dir, monkeypatch):
    places = {"ws": ws, "runs": ws / "runs", "mine": ws / "mine", "taken": ws / "taken.jsonl", "data": ws / "data.json"}
    places.update(prompts=ws / "prompts.jsonl", tiny=tiny_qwen2_dir, disk=request.getfixturevalue("disk") if needs == "disk" else None)
    argv = [a.format(**places) for a in argv]
    monkeypatch.chdir(ROOT)  # demo's default config is relative to the project, as `make demo` runs it
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # chat reads turns from stdin
    before = snapshot(ws), snapshot(places["disk"]) if places["disk"] else {}
    try:
        got = main(argv)
    except BaseException as e:  # what a user would see as a traceback
        pytest.fail(f"thinktune {' '.join(argv)} raised {type(e).__name__}: {e}")
    out, err = capsys.readouterr()
    assert got == code, err[-2000:]
    shown = err if code else out + err
    assert "Traceback" not in err
    for word in words:
        assert word in shown, shown[-2000:]
    if code:  # one paragraph: the one error line, and the last thing said
        assert err.count("thinktune: error: ") == 1 and err.strip().splitlines()[-1].startswith("thinktune: error: ")
    assert (snapshot(ws), snapshot(places["disk"]) if places["disk"] else {}) == before  # nothing written, changed or left behind
