"""Weight files that are whole, safe and fit: the checks that turn a damaged safetensors file,
a pickle PyTorch's weights-only loader refuses, broken JSON, or a LoRA adapter that does not fit its
base into one UserError naming the file and what to do (issue 13); and `attach_adapter`, the one
place an adapter meets its base.

Before issue 13 these reached users as tracebacks (SafetensorError, UnpicklingError, a state_dict
dump), or worse, loaded: PEFT skips adapter tensors the model has no layer for, and leaves the
model's layers that the adapter lacks without LoRA, with at most a warning.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .errors import UserError

if TYPE_CHECKING:  # model.py imports this module: the type only, no import cycle at run time
    from .model import Source

FIX_RUN = "re-train the run, or copy the run folder again"
FIX_MODEL = "download or copy the model folder again"
PEFT_PREFIX = "base_model.model."  # how PEFT names a causal LM's tensors in adapter files
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")  # PEFT's order of preference


def _fix_for(source: Source) -> str:
    if (Path(source.path) / "adapter_config.json").is_file():  # a run folder's tokenizer (merge)
        return FIX_RUN
    if source.gguf_file:
        return f"delete the folder it is in, and thinktune converts {source.gguf_file} again"
    return FIX_MODEL


def _first_line(error: Exception) -> str:
    """The gist of a library's error: its first sentence (torch's run on for a paragraph)."""
    text = str(error).strip()
    return text.splitlines()[0].split(". ")[0][:300] if text else type(error).__name__


def _damaged(path: Path, why: str, fix: str) -> UserError:
    return UserError(f"{path} is damaged or incomplete ({why}); {fix}.")


def _unsafe_pickle(path: Path, error: Exception) -> UserError:
    """A pickle that loads only with weights_only=False, which transformers 5.24 does not pass on
    (from_pretrained(weights_only=False) still refuses): the remedy is a safetensors file beside
    it, which transformers and PEFT prefer to the pickle."""
    found = re.search(r"Unsupported global: GLOBAL [\w.]+", str(error))
    target = path.with_name(path.name.replace("pytorch_model", "model").removesuffix(".bin") + ".safetensors")  # transformers' names
    shards = (
        "" if path.name in ("adapter_model.bin", "pytorch_model.bin") else " (a sharded model needs every shard converted, and model.safetensors.index.json)"
    )
    convert = (
        'python -c "import torch; from safetensors.torch import save_file; '
        f"sd = torch.load('{path}', weights_only=False); "
        f"save_file({{k: v.contiguous().clone() for k, v in sd.items() if torch.is_tensor(v)}}, '{target}', metadata={{'format': 'pt'}})\""
    )
    return UserError(
        f"{path} holds pickle weights that PyTorch's safe loader refuses ({found.group(0) if found else 'objects other than tensors'}), "
        f"and thinktune does not load them otherwise, because a pickle can run code. If you trust where the file came from, "
        f"convert it to safetensors once{shards}: {convert}; then give the same folder again."
    )


def weight_shapes(path: Path, fix: str) -> dict[str, tuple[int, ...]]:
    """The tensor names and shapes in a weights file, without loading the weights: a safetensors
    header, or a pickle read onto the meta device by PyTorch's weights-only loader (as transformers
    and PEFT read it). A file that cannot be read so is a UserError naming it, with `fix`."""
    import pickle

    from safetensors import safe_open

    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
        state = torch.load(path, map_location="meta", weights_only=True)
        return {k: tuple(v.shape) for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
    except PermissionError as e:  # unreadable, not damaged (other OSErrors: a zip cut short gives EINVAL)
        raise UserError(f"Could not read {path}: {e.strerror}.") from None
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):  # a class or function in the pickle: it would run code
            raise _unsafe_pickle(path, e) from None
        raise _damaged(path, "not a PyTorch weights file", fix) from None
    except Exception as e:  # SafetensorError (header cut short, not safetensors), zip cut short (RuntimeError, OSError), EOFError
        raise _damaged(path, _first_line(e), fix) from None


def _check_weight_files(folder: Path, fix: str) -> None:
    """Raise the UserError naming a model folder's damaged or refused weights file, if it has one
    (transformers reads the pickles only when there is no safetensors file)."""
    for path in sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin")):
        weight_shapes(path, fix)


def _raise_broken_json(folder: Path, fix: str) -> None:
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:  # JSONDecodeError, UnicodeDecodeError
            raise _damaged(path, f"not valid JSON: {_first_line(e)}", fix) from None


def _adapter_config(folder: Path) -> dict:
    path = folder / "adapter_config.json"
    if not path.is_file():
        raise UserError(f"{folder} holds no adapter (adapter_config.json); give a thinktune run folder (or any PEFT adapter folder).")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise _damaged(path, f"not valid JSON: {_first_line(e)}", FIX_RUN) from None


def _adapter_file(folder: Path) -> Path:
    """The adapter weights file PEFT would read, once adapter_config.json has been read."""
    _adapter_config(folder)
    found = [folder / name for name in ADAPTER_FILES if (folder / name).is_file()]
    if not found:
        raise UserError(f"{folder} holds no adapter weights ({ADAPTER_FILES[0]}): the run did not finish, or the folder was copied without them; {FIX_RUN}.")
    return found[0]


def attach_adapter(model, adapter: str | Path, base_name: str, trainable: bool = False):
    """The LoRA adapter in folder `adapter` (a run folder or any PEFT adapter folder) attached to
    `model`, the base loaded from `base_name`; returns the PeftModel. The one place that checks the
    adapter's files are whole and fit this base (issue 13): eval, compare, generate, chat, merge,
    and `thinktune rl` (`trainable`: its LoRA weights go on training)."""
    from peft import PeftModel

    folder = Path(adapter)
    shapes = weight_shapes(_adapter_file(folder), FIX_RUN)
    misfits = _misfits(model, shapes)
    if misfits:
        raise _misfit_error(folder, base_name, misfits)
    try:
        with warnings.catch_warnings():  # its missing keys become the error below, one paragraph
            warnings.filterwarnings("ignore", message="Found missing adapter keys")
            peft_model = PeftModel.from_pretrained(model, str(folder), is_trainable=trainable)
    except (RuntimeError, ValueError, KeyError) as e:  # a misfit the checks above do not foresee
        raise _misfit_error(folder, base_name, [_first_line(e)]) from None
    missing = _missing_lora(peft_model, shapes)
    if missing:
        raise _misfit_error(folder, base_name, missing)
    return peft_model


def _misfits(model, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Layers the adapter has LoRA for that the model lacks, or has at other widths."""
    widths: dict[str, list[int | None]] = {}  # layer -> the [in, out] its lora_A, lora_B are sized for
    for key, shape in shapes.items():
        if key.startswith(PEFT_PREFIX) and ".lora_" in key:
            name, part = key[len(PEFT_PREFIX) :].split(".lora_", 1)
            width = widths.setdefault(name, [None, None])
            if part.startswith(("A.", "embedding_A")):
                width[0] = shape[-1]
            elif part.startswith(("B.", "embedding_B")):
                width[1] = shape[0]
    modules = dict(model.named_modules())
    problems = []
    for name, (a_in, a_out) in widths.items():
        module = modules.get(name)
        if module is None:
            problems.append(f"{name} is not in that model")
            continue
        m_in = getattr(module, "in_features", getattr(module, "num_embeddings", None))
        m_out = getattr(module, "out_features", getattr(module, "embedding_dim", None))
        if None not in (a_in, a_out, m_in, m_out) and (a_in, a_out) != (m_in, m_out):
            problems.append(f"{name} is {m_in} -> {m_out} features there, the adapter's LoRA is for {a_in} -> {a_out}")
    return problems


def _missing_lora(peft_model, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Layers the adapter's config gives LoRA in this model that its file has no weights for."""
    from peft import get_peft_model_state_dict

    names = {k.split(".lora_")[0][len(PEFT_PREFIX) :] for k in get_peft_model_state_dict(peft_model) if ".lora_" in k and k not in shapes}
    return [f"{name} has no LoRA weights in the adapter" for name in sorted(names)]


def _misfit_error(folder: Path, base_name: str, problems: list[str]) -> UserError:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return UserError(f"The adapter in {folder} does not fit the base model {base_name}: {problems[0]}{more}. {_trained_on(folder, base_name)}")


def _trained_on(folder: Path, base_name: str) -> str:
    """Which base to give instead: the one the run names, unless that is the one that misfits
    (merge takes the base from the run), then the one PEFT recorded at training."""
    from .run import run_config

    cfg = run_config(folder)
    recorded = _adapter_config(folder).get("base_model_name_or_path") or "a base it does not name"
    named = cfg.model.name if cfg is not None else recorded
    if named != base_name:
        return f"It was trained on {named}: give --model {named}, or leave --model out and thinktune loads the base the run names."
    if cfg is not None and recorded != base_name:
        return (
            f"Its config.yaml names {base_name} as its base, but its adapter_config.json says it was trained on {recorded}: "
            f"set model.name in {folder / 'config.yaml'} to the base it was trained on."
        )
    return f"The run names {base_name} as its base, so the model there is not the one it was trained on: put that model back, or (eval, chat) give --model with the base it was trained on."
