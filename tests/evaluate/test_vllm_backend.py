"""vllm_backend.py: the clear errors where vLLM or CUDA is missing (this machine has neither), and
the two-pass thinking budget's cut, checked on scripted first-pass outputs with the real tokenizer.
Nothing here claims vLLM runs: it is not installed on the machines that build thinktune."""

import doctest
import importlib.util

import pytest

from thinktune.cli import main
from thinktune.data.encode import tokenize
from thinktune.decoding import Decoding
from thinktune.errors import UserError
from thinktune.evaluate import vllm_backend
from thinktune.evaluate.budget import FORCED_CLOSE


def test_without_vllm_the_error_says_how_to_install_it():
    assert importlib.util.find_spec("vllm") is None  # the premise of this test on this machine
    with pytest.raises(UserError, match=r"--backend vllm needs the vllm package.*pip install vllm.*--backend at hf"):
        vllm_backend.check_available()


def test_without_a_gpu_the_error_says_so(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(vllm_backend.importlib.util, "find_spec", lambda name: object() if name == "vllm" else real(name))
    with pytest.raises(UserError, match=r"runs on an NVIDIA GPU \(CUDA\), and this machine has none"):
        vllm_backend.check_available()


def test_eval_and_generate_with_vllm_stop_before_any_model_loads(tmp_path, capsys):
    out = tmp_path / "e"
    assert main(["eval", "--model", "smollm2-demo", "--backend", "vllm", "--limit", "2", "--out", str(out)]) == 2
    assert "pip install vllm" in capsys.readouterr().err and not out.exists()
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "Hi"}\n')
    assert main(["generate", "--model", "smollm2-demo", "--backend", "vllm", "--input", str(prompts), "--out", str(tmp_path / "g.jsonl")]) == 2
    assert not (tmp_path / "g.jsonl").exists()


def test_compare_names_the_way_to_use_vllm(tmp_path):
    from thinktune.evaluate.api import compare

    with pytest.raises(UserError, match="run thinktune eval --backend vllm once with --adapter and once without"):
        compare("smollm2-demo", "runs/x", out=tmp_path / "c", backend="vllm")


class Scripted(vllm_backend.VllmModel):
    """The backend's own logic on scripted vLLM outputs: pass 1 returns `first`, pass 2 `second`."""

    def __init__(self, tokenizer, first: list[str], second: list[str]):
        self.adapter, self.calls = None, []
        self.replies = [[(tokenize(tokenizer, t), "eos") for t in first], [(tokenize(tokenizer, t), "eos") for t in second]]

    def _generate(self, prompts, dec, max_tokens, stop_think):
        self.calls.append((prompts, max_tokens, stop_think))
        return self.replies[len(self.calls) - 1]


def test_two_pass_budget_cuts_at_the_word_boundary_and_answers_in_what_is_left(r1_tokenizer):
    prompt = tokenize(r1_tokenizer, "<｜User｜>Q<｜Assistant｜><think>\n")
    closed = "Short.\n</think>"  # the model closed in time: pass 2 continues it
    over = "The patient has pheochromocytoma and fever today and more"  # still thinking at the budget
    ended = "Done"  # ended by eos without closing: no pass 2
    model = Scripted(r1_tokenizer, [closed, over, ended], ["\n\nThe answer is B.", "The answer is C."])
    dec = Decoding(max_new_tokens=40, temperature=0.0, top_p=1.0, max_thinking_tokens=6)
    rows, _ = model.generate_all(r1_tokenizer, [prompt] * 3, dec)
    (first_prompts, first_max, stop1), (follow, rest_max, stop2) = model.calls
    assert (first_max, stop1, stop2) == (6 + vllm_backend.GRACE, True, False)
    assert rows[0]["text"] == "Short.\n</think>\n\nThe answer is B." and rows[0]["forced_close"] is None
    assert rows[1]["text"] == "The patient has pheochromocytoma" + FORCED_CLOSE + "The answer is C." and rows[1]["forced_close"] == "boundary"
    assert rows[2] == {"text": "Done", "tokens": 1, "stop": "eos", "forced_close": None}
    kept = [len(tokenize(r1_tokenizer, closed)), len(tokenize(r1_tokenizer, "The patient has pheochromocytoma" + FORCED_CLOSE))]
    assert len(follow) == 2 and rest_max == [40 - k for k in kept]


def test_outputs_are_cut_where_the_engine_would_stop_a_loop():
    result = doctest.testmod(vllm_backend)
    assert result.attempted >= 1 and result.failed == 0
    varied = list(range(300, 400))
    assert vllm_backend.cut_loop(varied + [9] * 200, "max_new_tokens") == (varied + [9] * 100, "loop")  # the first check at a multiple of 8 after 96 repeats
