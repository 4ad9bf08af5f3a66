"""`--backend vllm`: generation through vLLM on an NVIDIA GPU (as LLaMA-Factory, ms-swift and oumi
evaluate), the adapter served as a LoRA request on the base model. The same prompt ids go in and
the same result rows come out as from the hf engine (generate.py), so extraction, scoring and the
files do not change. Written against vLLM's documented offline API (LLM, SamplingParams,
LoRARequest, token-id prompts); not run here: the machines that build thinktune have no GPU.

The thinking budget runs in two passes with the same rule as the hf engine (budget.ThinkBudget):
the first pass stops at `</think>` or `budget + GRACE` tokens; a row still thinking is cut where
ThinkBudget would have put the close, the close is appended, and a second pass writes the answer
in the tokens that remain.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from ..errors import UserError
from .budget import GRACE, ThinkBudget

BACKENDS = ("hf", "vllm")


def check_available() -> None:
    """vLLM installed and a CUDA GPU present, or one clear error (exit 2) before any model loads."""
    import torch

    if importlib.util.find_spec("vllm") is None:
        raise UserError(
            "--backend vllm needs the vllm package, which is not installed here. On a machine with an NVIDIA GPU: "
            "pip install vllm (into the same environment as thinktune). Or leave --backend at hf (the default), which runs everywhere."
        )
    if not torch.cuda.is_available():
        raise UserError("--backend vllm runs on an NVIDIA GPU (CUDA), and this machine has none. Use --backend hf (the default).")


def load_vllm(model_name: str, adapter: str | None):
    """The base model in vLLM (+ the adapter as a LoRA) and thinktune's tokenizer for it (which
    renders the prompts). A GGUF model has no folder vLLM reads: refused with the way out."""
    from ..model import _gguf_cache, load_tokenizer, resolve

    check_available()
    source = resolve(model_name)
    folder = str(_gguf_cache(source)) if source.gguf_file else source.path
    return VllmModel(folder, adapter, folder), load_tokenizer(source)


class VllmModel:
    """A base model in vLLM, with the adapter (if any) as its one LoRA: `generate_all` has the
    signature and the result rows of generate.generate_all."""

    def __init__(self, model_path: str, adapter: str | None, tokenizer_path: str):
        check_available()
        from vllm import LLM

        rank = json.loads((Path(adapter) / "adapter_config.json").read_text())["r"] if adapter else None
        extra = {"enable_lora": True, "max_lora_rank": max(8, rank or 8)} if adapter else {}
        self.llm = LLM(model=model_path, tokenizer=tokenizer_path, **extra)
        self.adapter = adapter

    def generate_all(self, tokenizer, prompts: list[list[int]], dec, desc: str = "generating", on_batch=None) -> tuple[list[dict], dict]:
        import time

        from .generate import _speed

        start = time.perf_counter()
        if dec.max_thinking_tokens is None:
            outs, budgets = self._generate(prompts, dec, dec.max_new_tokens, stop_think=False), [None] * len(prompts)
        else:
            outs, budgets = self._budgeted(tokenizer, prompts, dec)
        if dec.stop_loops:  # vLLM has no such rule: cut each output where the engine's check would have stopped it
            outs = [cut_loop(ids, stop) for ids, stop in outs]
        results = [
            {"text": tokenizer.decode(ids, skip_special_tokens=True), "tokens": len(ids), "stop": stop, "forced_close": b.forced if b else None}
            for (ids, stop), b in zip(outs, budgets)
        ]
        if on_batch is not None:
            on_batch(list(range(len(results))), results)
        return results, _speed(len(prompts), sum(r["tokens"] for r in results), time.perf_counter() - start)

    def _generate(self, prompts: list[list[int]], dec, max_tokens: list[int] | int, stop_think: bool) -> list[tuple[list[int], str]]:
        """(generated ids without the end token, "eos" | "max_new_tokens") per prompt."""
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        limits = max_tokens if isinstance(max_tokens, list) else [max_tokens] * len(prompts)
        params = [
            SamplingParams(
                temperature=dec.temperature,
                top_p=dec.top_p,
                repetition_penalty=dec.repetition_penalty,
                max_tokens=max(1, n),
                seed=dec.seed,
                stop=["</think>"] if stop_think else None,
                include_stop_str_in_output=True,
            )
            for n in limits
        ]
        lora = LoRARequest("adapter", 1, self.adapter) if self.adapter else None
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, lora_request=lora)
        return [(list(o.outputs[0].token_ids), "max_new_tokens" if o.outputs[0].finish_reason == "length" else "eos") for o in outs]

    def _budgeted(self, tokenizer, prompts: list[list[int]], dec):
        """The two passes of the thinking budget (see the module docstring)."""
        from ..data.render import THINK_CLOSE
        from .generate import opened

        first = self._generate(prompts, dec, dec.max_thinking_tokens + GRACE, stop_think=True)
        budgets, kept = [], []
        for prompt, (ids, _) in zip(prompts, first):
            b = ThinkBudget(tokenizer, dec.max_thinking_tokens, opened(tokenizer, prompt))
            out = []
            for token in ids:
                out.append(b.choose(token))
                if b.forced:
                    out += b.pending
                    break
            budgets.append(b)
            kept.append(out)
        # a row goes on if its thinking was closed (by the model or the budget) and room is left
        more = [
            i
            for i, (k, (ids, stop)) in enumerate(zip(kept, first))
            if (budgets[i].forced or THINK_CLOSE in tokenizer.decode(ids)) and len(k) < dec.max_new_tokens
        ]
        rest = self._generate([prompts[i] + kept[i] for i in more], dec, [dec.max_new_tokens - len(kept[i]) for i in more], stop_think=False)
        outs = [(k, "max_new_tokens" if len(k) >= dec.max_new_tokens else stop) for k, (_, stop) in zip(kept, first)]
        for i, (ids, stop) in zip(more, rest):
            outs[i] = (kept[i] + ids, stop)
        return outs, budgets


def cut_loop(ids: list[int], stop: str) -> tuple[list[int], str]:
    """An output cut where batching.Engine would have stopped it as a loop (loop.looping), or as it was.

    >>> cut_loop([4, 5] * 100, "max_new_tokens")[0] == [4, 5] * 48, cut_loop([1, 2, 3], "eos")
    (True, ([1, 2, 3], 'eos'))
    """
    from .loop import EVERY, looping

    return next(((ids[:n], "loop") for n in range(EVERY, len(ids) + 1, EVERY) if looping(ids[:n])), (ids, stop))
