"""merge: the merged folder generates what base + adapter generates, and needs no PEFT to load."""

import json
import subprocess
import sys

import pytest
import torch

from conftest import tiny_model
from thinktune import config
from thinktune.cli import main
from thinktune.decoding import Decoding
from thinktune.evaluate.generate import generate_all
from thinktune.export import merge

# The merged model must generate exactly what base + adapter does: in fp32, whatever the CPU (bf16
# autocast on a native-bf16 CPU rounds W+BA and Wx+B(Ax) apart, and greedy tokens then part ways).
pytestmark = pytest.mark.usefixtures("exact_generation")
GREEDY = Decoding(max_new_tokens=32, temperature=0.0, batch_size=2)


def _tiny_qwen2_run(tmp_path, r1_tokenizer):
    """A tiny random Qwen2 base folder and a run folder with a non-zero LoRA adapter on it."""
    from peft import LoraConfig, get_peft_model

    base_dir, run_dir = tmp_path / "base", tmp_path / "run"
    base = tiny_model("qwen2", 152064, seed=1)
    base.save_pretrained(base_dir)
    r1_tokenizer.save_pretrained(base_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(run_dir)
    r1_tokenizer.save_pretrained(run_dir)
    cfg = config.load(None, [f"model.name={json.dumps(str(base_dir))}"])
    (run_dir / "config.yaml").write_text(config.dump(cfg))
    return run_dir


def _prompts(tok):
    msgs = [[{"role": "user", "content": "What is the first-line treatment of anaphylaxis?"}], [{"role": "user", "content": "Hi"}]]
    return [tok(tok.apply_chat_template(m, tokenize=False, add_generation_prompt=True), add_special_tokens=False)["input_ids"] for m in msgs]


def _check_merge(run_dir, out):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thinktune.model import load_model, resolve
    from thinktune.run import base_model_of

    tok = AutoTokenizer.from_pretrained(run_dir)
    with_adapter = PeftModel.from_pretrained(load_model(resolve(base_model_of(run_dir)), torch.float32, "cpu"), run_dir).eval()
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    prompts = _prompts(tok)
    want = [r["text"] for r in generate_all(with_adapter, tok, prompts, GREEDY)[0]]
    got = [r["text"] for r in generate_all(merged, tok, prompts, GREEDY)[0]]
    assert got == want
    assert merged.generation_config.eos_token_id == tok.eos_token_id
    assert AutoTokenizer.from_pretrained(out).chat_template == tok.chat_template
    assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
    return prompts, got


def _without_peft(out, prompts) -> list[str]:
    code = (
        "import sys, json; sys.modules['peft'] = None\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "import torch\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(out)!r}).eval(); t = AutoTokenizer.from_pretrained({str(out)!r})\n"
        f"outs = []\n"
        f"for p in {prompts!r}:\n"
        "    ids = m.generate(torch.tensor([p]), max_new_tokens=32, do_sample=False, repetition_penalty=1.0)[0, len(p):].tolist()\n"
        "    ids = ids[: ids.index(t.eos_token_id)] if t.eos_token_id in ids else ids\n"
        "    outs.append(t.decode(ids, skip_special_tokens=True))\n"
        "print(json.dumps(outs))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_merge_tiny_qwen2(tmp_path, r1_tokenizer):
    run_dir = _tiny_qwen2_run(tmp_path, r1_tokenizer)
    out = merge(run_dir, tmp_path / "merged", dtype="fp32")
    prompts, got = _check_merge(run_dir, out)
    assert _without_peft(out, prompts) == got


def test_merge_demo_model(smoke_run, tmp_path):
    _, run_dir, _, _, _ = smoke_run
    out = tmp_path / "merged"
    assert main(["merge", str(run_dir), "--out", str(out), "--dtype", "fp32"]) == 0
    prompts, got = _check_merge(run_dir, out)
    assert _without_peft(out, prompts) == got
    assert main(["merge", str(run_dir), "--out", str(out)]) == 2  # refuses a non-empty folder


def test_merge_bf16_is_half_the_size(smoke_run, tmp_path):
    _, run_dir, _, _, _ = smoke_run
    out = merge(run_dir, tmp_path / "m16", dtype="bf16")
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"BF16"}


def test_generate_file(smoke_run, tmp_path):
    _, run_dir, _, _, _ = smoke_run
    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps({"prompt": "What causes anemia?"}) + "\n" + json.dumps({"Question": "Define sepsis.", "Complex_CoT": "x", "Response": "y"}) + "\n"
    )
    out = tmp_path / "out.jsonl"
    assert main(["generate", "--adapter", str(run_dir), "--input", str(src), "--out", str(out), "--max-new-tokens", "8", "--temperature", "0"]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["row"] for r in rows] == [1, 2]
    assert "What causes anemia?" in rows[0]["prompt"] and "Define sepsis." in rows[1]["prompt"]
    assert all(r["output_tokens"] <= 8 and r["stop"] in ("eos", "max_new_tokens") for r in rows)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "no prompt field"}) + "\n")
    assert main(["generate", "--adapter", str(run_dir), "--input", str(bad), "--out", str(tmp_path / "other.jsonl")]) == 2
    assert not (tmp_path / "other.jsonl").exists()


def test_generate_finishes_what_an_interrupted_run_saved(smoke_run, tmp_path, capsys):
    """Issue 13: rows are saved as they come; the next run of the same job keeps them."""
    _, run_dir, _, _, _ = smoke_run
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in ("What causes anemia?", "Define sepsis.")))
    flags = ["--adapter", str(run_dir), "--input", str(src), "--max-new-tokens", "8", "--temperature", "0"]
    assert main(["generate", *flags, "--out", str(tmp_path / "full.jsonl")]) == 0
    full = [json.loads(x) for x in (tmp_path / "full.jsonl").read_text().splitlines()]
    from thinktune.evaluate.run import generate_job

    job = generate_job("smollm2-demo", str(run_dir), str(src), Decoding(max_new_tokens=8, temperature=0.0, seed=0))
    assert job["adapter"][0][0].endswith("adapter_model.safetensors") and job["input"][0] == str(src.resolve())
    saved = {**full[1], "output": "SAVED BEFORE THE INTERRUPTION"}
    (tmp_path / ".out.jsonl.partial").write_text(json.dumps({"job": job}) + "\n" + json.dumps(saved) + "\n" + '{"row": 1, "outp')  # cut short by a kill
    capsys.readouterr()
    assert main(["generate", *flags, "--out", str(tmp_path / "out.jsonl")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert rows == [full[0], saved] and "Generated 2 rows (1 kept from an interrupted run)" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full.jsonl", "in.jsonl", "out.jsonl"]  # the partial file is gone
    # an existing output is replaced only when asked, and the check comes before any work
    assert main(["generate", *flags, "--out", str(tmp_path / "out.jsonl")]) == 2
    assert "out.jsonl already exists; pass --overwrite" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["int8"])
def test_merge_rejects_unknown_dtype(smoke_run, tmp_path, dtype):
    from thinktune.errors import UserError

    with pytest.raises(UserError, match="choose one of bf16, fp16, fp32"):
        merge(smoke_run[1], tmp_path / "x", dtype=dtype)
