"""Every setting of a run, documented once, with the reference recipe as the defaults.

The defaults are the popular tutorial's recipe (DeepSeek-R1-Distill-Qwen-1.5B, LoRA r=16/alpha=32
on q_proj,v_proj, batch 2 x accumulation 4, 3 epochs, lr 3e-4, first 1500 rows) with its defects
fixed. `examples/medical_r1.yaml` spells the same values out with a comment on each line; a test
checks that the two agree. Unknown keys are an error, never silently dropped.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from .errors import ConfigError


def knob(default: Any, help: str, choices: tuple | None = None) -> Any:
    """A config field with its one-sentence explanation (shown in --help and `thinktune config`)."""
    meta = {"help": help, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelConfig:
    name: str = knob(
        "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
        "Base model: a hub id, a local folder with safetensors, a .gguf file, or the alias 'smollm2-demo' (the small offline demo model).",
    )
    device: str = knob(
        "auto",
        "Where to train: 'auto' picks CUDA, then Apple MPS, then CPU and says which.",
        ("auto", "cuda", "mps", "cpu"),
    )
    precision: str = knob(
        "auto",
        "Number format for training: 'auto' is bf16 on GPUs that support it, else fp16 (with fp32 "
        "adapter weights), and on CPU bf16 autocast only where the CPU has native bf16 (AMX or "
        "AVX512-BF16, or THINKTUNE_CPU_BF16=native), else fp32; bf16/fp16 halve memory and speed "
        "up at a tiny cost in accuracy.",
        ("auto", "bf16", "fp16", "fp32"),
    )
    attn_implementation: str = knob(
        "auto",
        "Attention kernel: 'auto' is flash-attention 2 on CUDA when flash-attn is installed, else PyTorch's sdpa; 'eager' is the slow reference.",
        ("auto", "sdpa", "eager", "flash_attention_2"),
    )
    load_in_4bit: bool = knob(
        False,
        "QLoRA: hold the frozen base weights in 4-bit NF4 (bitsandbytes, CUDA only, double quantisation, bf16 compute), about a quarter of the bf16 weight memory.",
    )


@dataclass
class DataConfig:
    path: str = knob(
        "FreedomIntelligence/medical-o1-reasoning-SFT",
        "Training data: a .json/.jsonl/.csv/.parquet file, or a hub dataset name.",
    )
    hub_config: Optional[str] = knob("en", "For a hub dataset: its config (subset), e.g. 'en' or 'zh'; ignored for files.")
    split: str = knob("train", "For a hub dataset: which split to read; ignored for files.")
    format: str = knob(
        "columns",
        "Row format: 'columns' (question, reasoning, answer columns) or 'messages' (a chat list).",
        ("columns", "messages"),
    )
    question_field: str = knob("Question", "Column holding the question (the user turn).")
    cot_field: str = knob("Complex_CoT", "Column holding the reasoning, trained inside <think>.")
    response_field: str = knob("Response", "Column holding the final answer after </think>.")
    messages_field: str = knob("messages", "For format 'messages': the column with the chat list.")
    system_prompt: Optional[str] = knob(None, "Optional system message put before every question (none by default).")
    limit: Optional[int] = knob(1500, "Use at most this many rows (null = all); fewer rows train faster but learn less.")
    sample: str = knob(
        "first",
        "How to pick the rows under the limit: the 'first' ones or a seeded 'random' sample.",
        ("first", "random"),
    )
    val_fraction: float = knob(0.05, "Share of the rows held out to measure loss on text the model never trains on.")
    val_min_rows: int = knob(4, "Hold out at least this many rows, whatever the fraction gives.")
    max_length: Optional[int] = knob(
        None,
        "Longest example in tokens; null = just long enough for the longest row, up to max_length_cap. Longer sequences cost memory and time.",
    )
    max_length_cap: int = knob(4096, "Upper bound for the automatic max_length; rows above it are dropped or truncated.")
    overflow: str = knob(
        "drop",
        "Rows longer than max_length: 'drop' them (default, nothing half-learned) or 'truncate' them (keeps the start, may cut the answer and the end token).",
        ("drop", "truncate"),
    )
    train_on_prompt: bool = knob(
        False,
        "Also train on the question tokens; by default only reasoning, answer and end token are.",
    )


@dataclass
class LoraConfig:
    r: int = knob(
        16,
        "LoRA rank: size of the small trainable matrices; higher learns more but uses more memory and can overfit small data.",
    )
    alpha: int = knob(32, "LoRA scale: the update is multiplied by alpha/r; higher alpha = stronger update.")
    dropout: float = knob(0.05, "Dropout on the LoRA input during training; a little guards small data against overfitting.")
    bias: str = knob("none", "Train bias vectors too: 'none' (default), 'lora_only' or 'all'.", ("none", "lora_only", "all"))
    target_modules: list = knob(
        ["q_proj", "v_proj"],
        "Layers that get LoRA adapters; adding k_proj, o_proj and the MLP (or 'all-linear') learns more at more memory and time.",
    )


@dataclass
class TrainConfig:
    output_dir: str = knob("runs/medical_r1", "Run folder for the adapter, logs, plot and summary.")
    overwrite: bool = knob(False, "Replace an existing run in output_dir instead of refusing.")
    batch_size: int = knob(2, "Rows per batch on one device; a batch is run as one pass, or row by row (rows_per_pass).")
    rows_per_pass: Optional[int] = knob(
        None,
        "Rows the model runs at once within a batch (must divide batch_size); 1 runs each row on "
        "its own: no padding, half the activation memory, the same updates; null = 1 on CPU (as "
        "fast there), batch_size on a GPU (which needs the parallel work).",
    )
    grad_accum: int = knob(
        4,
        "Batches summed before each weight update: effective batch = batch_size x grad_accum, at no extra memory but fewer updates.",
    )
    epochs: float = knob(3, "Passes over the training rows; more passes fit the data better until they overfit.")
    lr: float = knob(3e-4, "Learning rate: step size of each update; too high diverges, too low learns nothing.")
    lr_scheduler: str = knob("linear", "How the learning rate decays over the run.", ("linear", "cosine", "constant"))
    warmup_ratio: float = knob(0.0, "Share of the steps over which the learning rate ramps up from 0.")
    weight_decay: float = knob(0.0, "Pull of the adapter weights towards zero at each step.")
    max_grad_norm: float = knob(1.0, "Clip the gradient norm to this value to avoid unstable steps.")
    group_by_length: bool = knob(True, "Batch rows of similar length together so less compute goes to padding.")
    logging_steps: int = knob(20, "Log the training loss every this many optimizer steps.")
    eval_steps: int = knob(20, "Measure held-out loss every this many optimizer steps (and before the first).")
    save_steps: int = knob(
        100,
        "Save a resumable checkpoint every this many optimizer steps (--resume continues from the newest complete one); 0 = only the final adapter.",
    )
    save_total_limit: Optional[int] = knob(2, "Keep only the newest this many checkpoints and delete older ones; null keeps them all.")
    keep_checkpoints: bool = knob(
        False,
        "Leave the checkpoints (adapter plus optimizer state, about three times the adapter's size) "
        "in the finished run folder; by default they are deleted once the run is complete, as they "
        "only serve to resume an unfinished run.",
    )
    gradient_checkpointing: Optional[bool] = knob(
        None,
        "Recompute activations in the backward pass (much less memory, about 30% slower); null = on only when thinktune's memory plan says the run would not fit the device otherwise.",
    )
    packing: bool = knob(
        False,
        "Pack each batch's rows into one sequence with a block-diagonal attention mask, so no padding is computed (length grouping already leaves little).",
    )
    head_on_labels: bool = knob(
        True,
        "Compute the output head and loss only at positions that have a label, in chunks: the same loss without logits for prompt and pad positions.",
    )
    seed: int = knob(42, "Random seed for the data split, sampling, shuffling and LoRA init.")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTION_TYPES = {"model": ModelConfig, "data": DataConfig, "lora": LoraConfig, "train": TrainConfig}


def knobs() -> list[tuple[str, dataclasses.Field, Any]]:
    """All settings as (dotted name, field, resolved type), in documentation order."""
    out = []
    for section, cls in _SECTION_TYPES.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out.append((f"{section}.{f.name}", f, hints[f.name]))
    return out


def _coerce(name: str, value: Any, typ: Any, choices: tuple | None, where: str) -> Any:
    """Check one value against its declared type; ints are accepted where floats are expected."""
    optional = typing.get_origin(typ) is typing.Union and type(None) in typing.get_args(typ)
    base = next((a for a in typing.get_args(typ) if a is not type(None)), typ) if optional else typ
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: '{name}' cannot be null; give a {base.__name__}.")
    if base is float and isinstance(value, str):
        try:  # YAML 1.1 reads "1e-4" (no dot) as a string
            value = float(value)
        except ValueError:
            pass
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        str: isinstance(value, str),
        list: isinstance(value, list) or isinstance(value, str),
    }[base]
    if not ok:
        raise ConfigError(f"{where}: '{name}' must be a {base.__name__}, got {value!r} ({type(value).__name__}).")
    if base is float:
        value = float(value)
    if base is list and isinstance(value, str):
        value = [value] if value == "all-linear" else [v.strip() for v in value.split(",")]
    if choices and value not in choices:
        raise ConfigError(f"{where}: '{name}' must be one of {', '.join(choices)}; got {value!r}.")
    return value


def _unknown(key: str, known: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else f" Known keys: {', '.join(known)}."
    return ConfigError(f"{where}: unknown setting '{key}'.{hint} (Unknown keys are an error so that a typo never goes unnoticed.)")


def from_dict(raw: dict, where: str = "config") -> Config:
    """Build a Config from a nested dict, refusing unknown sections and keys."""
    cfg = Config()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of sections (model, data, lora, train).")
    for section, values in raw.items():
        if section not in _SECTION_TYPES:
            raise _unknown(section, list(_SECTION_TYPES), where)
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: section '{section}' must be a mapping of settings.")
        _apply_section(cfg, section, values, where)
    return cfg


def _apply_section(cfg: Config, section: str, values: dict, where: str) -> None:
    target = getattr(cfg, section)
    hints = typing.get_type_hints(type(target))
    fields = {f.name: f for f in dataclasses.fields(target)}
    for key, value in values.items():
        if key not in fields:
            raise _unknown(f"{section}.{key}", [f"{section}.{k}" for k in fields], where)
        choices = fields[key].metadata.get("choices")
        setattr(target, key, _coerce(f"{section}.{key}", value, hints[key], choices, where))


def check(cfg: Config, where: str) -> Config:
    """Cross-field and range checks that a type alone cannot express."""
    rules = [
        (0 <= cfg.train.warmup_ratio < 1, "train.warmup_ratio must be in [0, 1)"),
        (0 <= cfg.data.val_fraction < 1, "data.val_fraction must be in [0, 1)"),
        (cfg.train.batch_size >= 1 and cfg.train.grad_accum >= 1, "train.batch_size and train.grad_accum must be at least 1"),
        (
            cfg.train.rows_per_pass is None or (cfg.train.rows_per_pass >= 1 and cfg.train.batch_size % cfg.train.rows_per_pass == 0),
            "train.rows_per_pass must be at least 1 and divide train.batch_size (or null)",
        ),
        (cfg.train.epochs > 0 and cfg.train.lr > 0, "train.epochs and train.lr must be positive"),
        (cfg.lora.r >= 1, "lora.r must be at least 1"),
        (cfg.data.limit is None or cfg.data.limit >= 1, "data.limit must be at least 1 (or null for all rows)"),
        (cfg.data.max_length is None or cfg.data.max_length >= 8, "data.max_length must be at least 8 (or null)"),
        (cfg.train.save_steps >= 0, "train.save_steps must be 0 (no checkpoints) or more"),
        (cfg.train.save_total_limit is None or cfg.train.save_total_limit >= 1, "train.save_total_limit must be at least 1 (or null to keep all)"),
    ]
    for ok, message in rules:
        if not ok:
            raise ConfigError(f"{where}: {message}.")
    return cfg


def load(path: str | Path | None, overrides: Sequence[str] = (), values: dict[str, Any] | None = None) -> Config:
    """Load a YAML config (or the defaults when path is None), apply `section.key=value` text
    overrides (--set), then typed `values` ({"train.lr": 3e-4}: what CLI flags set), each checked
    against its declared type and choices."""
    raw: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"Config file {p} does not exist.")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"Config file {p} is not valid YAML: {e}") from None
    for item in overrides:
        section, key, value = _parse_override(item)
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"--set {item}: section '{section}' is not a mapping in {path}.")
        raw[section][key] = value
    where = str(path) if path else "config"
    cfg = from_dict(raw, where=where)
    for dotted, value in (values or {}).items():
        section, key = dotted.split(".", 1)
        _apply_section(cfg, section, {key: value}, f"the value given for {dotted}")
    return check(cfg, where)


def _parse_override(item: str) -> tuple[str, str, Any]:
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. --set lora.r=32.")
    dotted, text = item.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return section, key, value


def dump(cfg: Config) -> str:
    """The resolved config as YAML (written into every run folder)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True)
