"""Weight files that are whole, safe and fit (issue 13): damaged safetensors, unsafe pickles,
broken JSON and adapters that do not fit their base are each one UserError naming the file."""

import re

import pytest
import torch

from thinktune.errors import UserError
from thinktune.model import load_for_inference, load_model, load_tokenizer, resolve
from thinktune.weights import attach_adapter


def _llama_dir(folder, tokenizer, hidden: int = 32, layers: int = 2):
    """A tiny random Llama folder with the tiny tokenizer, as users hand a local model folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32, hidden_size=hidden, intermediate_size=64, num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _run_dir(folder, base, named=None):
    """A run folder as training leaves it, as far as loading goes: a LoRA adapter on q_proj,v_proj
    of `base`, and config.yaml naming `named` (the base itself unless given)."""
    from peft import LoraConfig as PeftLora
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), PeftLora(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(folder)
    (folder / "config.yaml").write_text(f"model:\n  name: {named or base}\n")
    return folder


@pytest.fixture(scope="module")
def base_a(tmp_path_factory, tiny_tokenizer):
    return _llama_dir(tmp_path_factory.mktemp("base-a"), tiny_tokenizer)


@pytest.fixture(scope="module")
def run_a(tmp_path_factory, base_a):
    return _run_dir(tmp_path_factory.mktemp("runs") / "run-a", base_a)


def _copy(folder, to):
    import shutil

    return shutil.copytree(folder, to)


def _cut(path, keep=None):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if keep is None else keep)


def test_a_damaged_adapter_file_is_named_with_what_to_do(tmp_path, base_a, run_a):
    """Issue 13: a cut-short, garbage or empty adapter_model.safetensors was a SafetensorError
    traceback in eval, chat and merge."""
    for name, keep in (("cut", None), ("garbage", b"not a safetensors file"), ("empty", b"")):
        run = _copy(run_a, tmp_path / name)
        _cut(run / "adapter_model.safetensors", keep)
        with pytest.raises(UserError) as e:
            load_for_inference(str(base_a), str(run))
        msg = str(e.value)
        assert f"{run / 'adapter_model.safetensors'} is damaged or incomplete" in msg and "re-train the run, or copy the run folder again" in msg, msg


def test_a_damaged_model_or_tokenizer_file_is_named(tmp_path, base_a):
    folder = _copy(base_a, tmp_path / "base")
    _cut(folder / "model.safetensors")
    with pytest.raises(UserError) as e:
        load_model(resolve(str(folder)), torch.float32, "cpu")
    assert f"{folder / 'model.safetensors'} is damaged or incomplete" in str(e.value) and "download or copy the model folder again" in str(e.value)
    _cut(folder / "tokenizer.json")
    with pytest.raises(UserError) as e:
        load_tokenizer(resolve(str(folder)))
    assert f"{folder / 'tokenizer.json'} is damaged or incomplete (not valid JSON" in str(e.value)


def test_an_adapter_on_a_wider_base_names_the_base_it_was_trained_on(tmp_path, tiny_tokenizer, base_a, run_a):
    """Issue 13: the run's base is named, and what to give instead (was a state_dict dump)."""
    wide = _llama_dir(tmp_path / "wide", tiny_tokenizer, hidden=48)
    with pytest.raises(UserError) as e:
        load_for_inference(str(wide), str(run_a))
    msg = str(e.value)
    assert f"The adapter in {run_a} does not fit the base model {wide}" in msg
    assert "model.layers.0.self_attn.q_proj is 48 -> 48 features there, the adapter's LoRA is for 32 -> 32 (and 3 more)" in msg
    assert f"It was trained on {base_a}: give --model {base_a}" in msg


def test_an_adapter_on_a_deeper_or_shallower_base_is_refused_not_half_applied(tmp_path, tiny_tokenizer, base_a, run_a):
    """Issue 13: PEFT skipped the layers the model lacks, and left the ones the adapter lacks
    without LoRA, with at most a warning: a half-applied adapter that evaluates as trained."""
    deep = _llama_dir(tmp_path / "deep", tiny_tokenizer, layers=3)
    with pytest.raises(
        UserError, match=r"does not fit the base model .*deep: model.layers.2.self_attn.q_proj has no LoRA weights in the adapter \(and 1 more\)"
    ):
        load_for_inference(str(deep), str(run_a))
    deep_run = _run_dir(tmp_path / "deep-run", deep)
    with pytest.raises(UserError, match=r"model.layers.2.self_attn.q_proj is not in that model \(and 1 more\)\. It was trained on .*deep: give --model"):
        load_for_inference(str(base_a), str(deep_run))


def test_a_run_whose_config_names_another_base_says_to_fix_the_config(tmp_path, tiny_tokenizer, base_a):
    """Issue 13, merge: the base comes from the run's config.yaml, so --model is no remedy."""
    wide = _llama_dir(tmp_path / "wide", tiny_tokenizer, hidden=48)
    run = _run_dir(tmp_path / "run", base_a, named=wide)
    with pytest.raises(UserError) as e:
        attach_adapter(load_model(resolve(str(wide)), torch.float32, "cpu"), run, str(wide))
    msg = str(e.value)
    assert f"The adapter in {run} does not fit the base model {wide}" in msg
    assert f"Its config.yaml names {wide} as its base, but its adapter_config.json says it was trained on {base_a}" in msg
    assert f"set model.name in {run / 'config.yaml'}" in msg


def test_an_adapter_folder_without_weights_or_with_a_broken_config(tmp_path, base_a, run_a):
    model = load_model(resolve(str(base_a)), torch.float32, "cpu")
    run = _copy(run_a, tmp_path / "run")
    (run / "adapter_model.safetensors").unlink()
    with pytest.raises(UserError, match=r"holds no adapter weights \(adapter_model.safetensors\)"):
        attach_adapter(model, run, str(base_a))
    _cut(run / "adapter_config.json")
    with pytest.raises(UserError, match=r"adapter_config.json is damaged or incomplete \(not valid JSON"):
        attach_adapter(model, run, str(base_a))


class Unsafe:
    """An object in a checkpoint: torch's weights-only unpickler refuses what it cannot vouch for."""


def test_pickle_weights_load_when_plain_and_are_refused_in_words_otherwise(tmp_path, base_a):
    """Issue 13: transformers 5.24 and PEFT read pytorch_model.bin / adapter_model.bin with
    torch.load(weights_only=True): plain tensors load; a pickle holding other objects (or cut
    short) was an UnpicklingError (RuntimeError) traceback."""
    from safetensors.torch import load_file

    folder = _copy(base_a, tmp_path / "pickled")
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    assert type(load_model(resolve(str(folder)), torch.float32, "cpu")).__name__ == "LlamaForCausalLM"
    torch.save({**state, "extra": Unsafe()}, folder / "pytorch_model.bin")
    with pytest.raises(UserError) as e:
        load_model(resolve(str(folder)), torch.float32, "cpu")
    msg = str(e.value)
    assert f"{folder / 'pytorch_model.bin'} holds pickle weights that PyTorch's safe loader refuses (Unsupported global: GLOBAL " in msg and "Unsafe)" in msg
    assert "a pickle can run code" in msg and "If you trust where the file came from, convert it to safetensors once: python -c" in msg
    exec(re.search(r'python -c "(.+)"; then give the same folder again', msg).group(1), {})  # the remedy, as the user runs it
    model = load_model(resolve(str(folder)), torch.float32, "cpu")
    assert torch.equal(model.model.layers[1].mlp.up_proj.weight, state["model.layers.1.mlp.up_proj.weight"])
    (folder / "model.safetensors").unlink()
    _cut(folder / "pytorch_model.bin")
    with pytest.raises(UserError, match=r"pytorch_model.bin is damaged or incomplete \((PytorchStreamReader failed|\[Errno 22\] Invalid argument)"):
        load_model(resolve(str(folder)), torch.float32, "cpu")


def test_a_pickle_adapter_loads_when_plain_and_is_refused_in_words_otherwise(tmp_path, base_a, run_a):
    from safetensors.torch import load_file

    run = _copy(run_a, tmp_path / "run")
    state = load_file(run / "adapter_model.safetensors")
    (run / "adapter_model.safetensors").unlink()
    torch.save(state, run / "adapter_model.bin")
    model = attach_adapter(load_model(resolve(str(base_a)), torch.float32, "cpu"), run, str(base_a))
    assert torch.equal(
        model.base_model.model.model.layers[0].self_attn.q_proj.lora_A["default"].weight,
        state["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"],
    )
    torch.save({**state, "extra": Unsafe()}, run / "adapter_model.bin")
    with pytest.raises(UserError) as e:
        attach_adapter(load_model(resolve(str(base_a)), torch.float32, "cpu"), run, str(base_a))
    assert "adapter_model.bin holds pickle weights that PyTorch's safe loader refuses" in str(e.value)
    exec(re.search(r'python -c "(.+)"; then give the same folder again', str(e.value)).group(1), {})
    model = attach_adapter(load_model(resolve(str(base_a)), torch.float32, "cpu"), run, str(base_a))
    assert torch.equal(
        model.base_model.model.model.layers[1].self_attn.v_proj.lora_B["default"].weight,
        state["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"],
    )
