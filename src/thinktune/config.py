"""Every setting of a run, documented once, with the reference recipe as the defaults.

The defaults are the popular tutorial's recipe (DeepSeek-R1-Distill-Qwen-1.5B, LoRA r=16/alpha=32
on q_proj,v_proj, batch 2 x accumulation 4, 3 epochs, lr 3e-4, first 1500 rows) with its defects
fixed. `examples/medical_r1.yaml` spells the same values out with a comment on each line; a test
checks that the two agree. Unknown keys are an error, never silently dropped.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml

from .errors import ConfigError


@dataclass(frozen=True)
class Range:
    """The numbers a setting allows, declared on its knob so that the check, its message and
    --help all read one definition. None = unbounded on that side; open = the bound excluded."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    why: str = ""  # a sentence added to the refusal: what the bound protects

    def __contains__(self, value: float) -> bool:
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self) -> str:
        low, high = _num(self.low), _num(self.high)
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"more than {low}" if self.low_open else f"at least {low}"
        return f"less than {high}" if self.high_open else f"at most {high}"


def _num(x: float | None) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)  # a seed bound in full, not as 4.29e+09


def knob(
    default: Any,
    help: str,
    choices: tuple | None = None,
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    below: float | None = None,
    why: str = "",
) -> Any:
    """A config field with its one-sentence explanation (shown in --help and `thinktune config`),
    its choices, and for a number the range it must fall in (checked where the value is read)."""
    low, low_open = (above, True) if above is not None else (at_least, False)
    high, high_open = (below, True) if below is not None else (at_most, False)
    rng = Range(low, high, low_open, high_open, why) if low is not None or high is not None else None
    meta = {"help": help, "choices": choices, "range": rng}
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
    # Off by default: eval/compare load the base in fp32, and compare's held-out loss must repeat the
    # run's own (issue 11); switching it on needs them to load what the run trained on (issue 18).
    cpu_bf16_weights: bool = knob(
        False,
        "On a CPU training in bf16: store the frozen base weights in bf16 (half their memory, no cast of every weight in every forward) "
        "while the LoRA weights and the optimizer stay fp32; ignored in fp32 and on GPUs, whose weights follow model.precision already.",
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
    limit: Optional[int] = knob(1500, "Use at most this many rows (null = all); fewer rows train faster but learn less.", at_least=1)
    sample: str = knob(
        "first",
        "How to pick the rows under the limit: the 'first' ones or a seeded 'random' sample.",
        ("first", "random"),
    )
    val_fraction: float = knob(
        0.05,
        "Share of the rows held out to measure loss on text the model never trains on.",
        at_least=0,
        at_most=0.5,
        why="Above 0.5 most rows would not be trained on.",
    )
    val_min_rows: int = knob(4, "Hold out at least this many rows, whatever the fraction gives.", at_least=0)
    max_length: Optional[int] = knob(
        None,
        "Longest example in tokens; null = just long enough for the longest row, up to max_length_cap. Longer sequences cost memory and time.",
        at_least=8,
    )
    max_length_cap: int = knob(4096, "Upper bound for the automatic max_length; rows above it are dropped or truncated.", at_least=8)
    overflow: str = knob(
        "drop",
        "Rows longer than max_length: 'drop' them (default, nothing half-learned) or 'truncate' them (keeps the start, may cut the answer and the end token; a row cut inside its prompt is dropped).",
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
        at_least=1,
    )
    alpha: int = knob(32, "LoRA scale: the update is multiplied by alpha/r; higher alpha = stronger update.", at_least=1)
    dropout: float = knob(0.05, "Dropout on the LoRA input during training; a little guards small data against overfitting.", at_least=0, below=1)
    bias: str = knob("none", "Train bias vectors too: 'none' (default), 'lora_only' or 'all'.", ("none", "lora_only", "all"))
    target_modules: list = knob(
        ["q_proj", "v_proj"],
        "Layers that get LoRA adapters; adding k_proj, o_proj and the MLP (or 'all-linear') learns more at more memory and time.",
    )
    use_dora: bool = knob(
        False,
        "DoRA: learn each weight's length apart from its direction (Liu et al. 2024); often a little better than LoRA at low rank, about a third slower per step.",
    )
    use_rslora: bool = knob(
        False,
        "rsLoRA: scale the update by alpha/sqrt(r) instead of alpha/r, so a high rank is not damped into learning less (Kalajdzievski 2023).",
    )
    init: str = knob(
        "default",
        "How the adapters start: 'default' adds nothing at first (B = 0); 'pissa' starts them from each weight's main singular "
        "directions (Meng et al. 2024), which often learns faster; its adapter is saved as a plain LoRA of rank 2r on the original model.",
        ("default", "pissa"),
    )
    loraplus_lr_ratio: Optional[float] = knob(
        None,
        "LoRA+: train the B matrices at this many times the learning rate of the A matrices (Hayou et al. 2024 suggest 16); null = off, one rate for both.",
        at_least=1,
    )


@dataclass
class TrainConfig:
    output_dir: str = knob("runs/medical_r1", "Run folder for the adapter, logs, plot and summary.")
    overwrite: bool = knob(False, "Replace an existing run in output_dir instead of refusing.")
    batch_size: int = knob(2, "Rows per batch on one device; a batch is run as one pass, or row by row (rows_per_pass).", at_least=1)
    rows_per_pass: Optional[int] = knob(
        None,
        "Rows the model runs at once within a batch (must divide batch_size); 1 runs each row on "
        "its own: no padding, half the activation memory, the same updates; null = 1 on CPU (as "
        "fast there), batch_size on a GPU (which needs the parallel work).",
        at_least=1,
    )
    grad_accum: int = knob(
        4,
        "Batches summed before each weight update: effective batch = batch_size x grad_accum, at no extra memory but fewer updates.",
        at_least=1,
    )
    epochs: float = knob(3, "Passes over the training rows; more passes fit the data better until they overfit.", above=0)
    lr: float = knob(3e-4, "Learning rate: step size of each update; too high diverges, too low learns nothing.", above=0)
    lr_scheduler: str = knob("linear", "How the learning rate decays over the run.", ("linear", "cosine", "constant"))
    warmup_ratio: float = knob(0.0, "Share of the steps over which the learning rate ramps up from 0.", at_least=0, below=1)
    weight_decay: float = knob(0.0, "Pull of the adapter weights towards zero at each step.", at_least=0)
    max_grad_norm: float = knob(
        1.0,
        "Clip the gradient norm to this value to avoid unstable steps; 0 turns clipping off.",
        at_least=0,
        why="0 turns gradient clipping off (as in transformers).",
    )
    group_by_length: bool = knob(True, "Batch rows of similar length together so less compute goes to padding.")
    logging_steps: int = knob(20, "Log the training loss every this many optimizer steps.", at_least=1)
    eval_steps: int = knob(
        20,
        "Measure held-out loss every this many optimizer steps (and before the first and at the end); 0 = only before and at the end.",
        at_least=0,
    )
    save_steps: int = knob(
        100,
        "Save a resumable checkpoint every this many optimizer steps (--resume continues from the newest complete one); 0 = only the final adapter.",
        at_least=0,
    )
    save_total_limit: Optional[int] = knob(2, "Keep only the newest this many checkpoints and delete older ones; null keeps them all.", at_least=1)
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
    report_to: str = knob(
        "none",
        "Also send the curves to experiment trackers through the Trainer's own integrations: none, or one or more of "
        "tensorboard (event files in the run folder's tensorboard/), wandb, trackio, mlflow, comma-separated; each needs its package.",
    )
    seed: int = knob(
        42,
        "Random seed for the data split, sampling, shuffling and LoRA init.",
        at_least=0,
        at_most=2**32 - 1,
        why="That is the range numpy's seeding (transformers' set_seed) accepts.",
    )


@dataclass
class RlConfig:
    """`thinktune rl` only (stage two, GRPO on answers that can be checked). The run-level settings
    it shares with SFT stay in train.* (output_dir, overwrite, seed, save_steps, lr_scheduler,
    warmup_ratio, weight_decay, max_grad_norm, gradient_checkpointing); lr and steps are its own."""

    data: str = knob(
        "medmcqa",
        "Items with checkable answers: medqa, medmcqa, pubmedqa or cmb (read from ../shared/data/eval or $THINKTUNE_EVAL_DIR), "
        "a file of that shape, or a .json/.jsonl file of {question, answer} rows (short answers compared after normalisation).",
    )
    adapter: Optional[str] = knob(
        "runs/medical_r1",
        "The SFT run folder whose adapter RL goes on training; null = the base model with a fresh LoRA from lora.*.",
    )
    exclude: list = knob(
        ["medqa"],
        "Benchmarks (names or files) you will evaluate on: items whose normalised question is in one of them are removed and counted, so nothing is trained on the test.",
    )
    limit: Optional[int] = knob(None, "Use at most this many items (null = all); a seeded random sample when there are more.", at_least=1)
    ask_answer_line: bool = knob(
        True, "Ask in each prompt for a closing 'The answer is X.' line, which the answer reader (as in thinktune eval) reads most surely."
    )
    num_generations: int = knob(
        8,
        "Completions sampled per prompt: GRPO scores each against the others of its group, so more give a steadier signal at more generation time.",
        at_least=2,
    )
    prompts_per_step: int = knob(2, "Prompts per weight update; each brings num_generations completions.", at_least=1)
    max_prompt_length: int = knob(512, "Prompts longer than this many tokens are left out and counted (never cut, which would cut the options).", at_least=8)
    max_completion_length: int = knob(
        2048,
        "Longest completion in tokens, thinking included; R1-style thinking needs room: a limit that cuts most completions gives every one reward 0 and nothing is learned.",
        at_least=8,
    )
    temperature: float = knob(0.6, "Sampling temperature of the completions (DeepSeek's advice for R1 models is 0.6).", above=0)
    top_p: float = knob(0.95, "Nucleus sampling cut-off of the completions (DeepSeek advises 0.95).", above=0, at_most=1)
    repetition_penalty: float = knob(1.0, "Penalty on tokens already written (1 = none); a very small model may need 1.1 to stop looping.", above=0)
    lr: float = knob(
        1e-5,
        "Learning rate of RL: far below SFT's, as each update follows the model's own noisy samples and a large step collapses what SFT taught; "
        "LoRA takes about ten times TRL's full-model default of 1e-6.",
        above=0,
    )
    steps: int = knob(200, "Weight updates to make.", at_least=1)
    beta: float = knob(
        0.0,
        "KL weight: pull towards the start (rl.adapter as it began, else the base model); 0, TRL's default, computes no reference; DeepSeek-R1 used 0.001.",
        at_least=0,
    )
    loss_type: str = knob(
        "dapo",
        "TRL's loss: dapo (tokens of the whole batch weigh alike, TRL's default), grpo (each completion averaged, prefers short right ones), "
        "dr_grpo (divided by a constant), bnpo, cispo or sapo.",
        ("grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo"),
    )
    epsilon: float = knob(0.2, "Clip range: how far one update may move a token's probability ratio from 1.", above=0, below=1)
    correctness_weight: float = knob(1.0, "Weight of the correctness reward: 1 when the answer after </think> is the right one, else 0.", at_least=0)
    format_weight: float = knob(
        0.5,
        "Weight of the format reward: a third each for one thinking section that opens and closes, a non-empty answer after it, and ending on the end token.",
        at_least=0,
    )
    stated_weight: float = knob(
        0.2,
        "Weight of the stated-answer reward: 1 when the answer names exactly one option (right or wrong), so an unreadable answer costs something.",
        at_least=0,
    )
    length_weight: float = knob(
        1.0, "Weight of DAPO's overlong penalty (0 down to -1 within overlong_buffer tokens of the limit), so the model learns to finish.", at_least=0
    )
    overlong_buffer: int = knob(
        256,
        "The last stretch before max_completion_length, in tokens, over which the overlong penalty grows from 0 to -1 (DAPO); 0 = only a cut completion is penalised.",
        at_least=0,
    )
    mask_truncated: bool = knob(
        True, "Leave completions cut at the limit out of the loss (DAPO, TRL's mask_truncated_completions): their reward says nothing about their answer."
    )
    completions_every: int = knob(
        10, "Write every completion of one step in this many (prompt, completion, rewards) to completions.jsonl, to read what is rewarded.", at_least=1
    )
    # Words, not on/off: YAML reads a bare on/off as true/false.
    generator: str = knob(
        "auto",
        "What generates the completions: 'vllm' (vLLM beside training, TRL's colocate mode; CUDA and the vllm package), 'transformers' (its generate, any device), "
        "or 'auto' = vllm when the device is CUDA and vllm is installed, else transformers.",
        ("auto", "vllm", "transformers"),
    )


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    rl: RlConfig = field(default_factory=RlConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTION_TYPES = {"model": ModelConfig, "data": DataConfig, "lora": LoraConfig, "train": TrainConfig, "rl": RlConfig}


def knobs() -> list[tuple[str, dataclasses.Field, Any]]:
    """All settings as (dotted name, field, resolved type), in documentation order."""
    out = []
    for section, cls in _SECTION_TYPES.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            out.append((f"{section}.{f.name}", f, hints[f.name]))
    return out


def _coerce(name: str, value: Any, typ: Any, meta: Mapping[str, Any], where: str) -> Any:
    """Check one value against its declared type, choices and range; ints are accepted where
    floats are expected."""
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
        value = _finite(name, value, where)
    if base is list:
        value = _names(name, value, where) if name == "lora.target_modules" else _strings(name, value, where)
    choices, rng = meta.get("choices"), meta.get("range")
    if choices and value not in choices:
        raise ConfigError(f"{where}: '{name}' must be one of {', '.join(choices)}; got {value!r}.")
    if rng is not None and value not in rng:
        raise ConfigError(f"{where}: '{name}' must be {rng}, got {value!r}. {rng.why}".rstrip())
    return value


def _finite(name: str, value: int | float, where: str) -> float:
    """inf and nan pass every type check and most comparisons (nan < 0 is False), then break
    training or the schedule far from the setting that caused it: refuse them here."""
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float, e.g. 1 followed by 400 zeros
        number = math.inf
    if not math.isfinite(number):
        raise ConfigError(f"{where}: '{name}' must be a finite number, got {value!r}.")
    return number


def _names(name: str, value: list | str, where: str) -> list[str]:
    """A list setting names modules: "a,b" or [a, b], each a non-empty string, at least one (an
    empty list would train nothing; a number would fail inside peft with no word of the setting)."""
    if isinstance(value, str):
        value = [value] if value == "all-linear" else [v.strip() for v in value.split(",")]
    if not value:
        raise ConfigError(f"{where}: '{name}' must name at least one module, e.g. [q_proj, v_proj] or all-linear.")
    if not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: '{name}' must be module names (strings), e.g. [q_proj, v_proj] or all-linear; got {value!r}.")
    return value


def _strings(name: str, value: list | str, where: str) -> list[str]:
    """Any other list setting: "a,b" or [a, b] of non-empty strings; empty is allowed."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: '{name}' must be a list of names, e.g. [medqa, cmb]; got {value!r}.")
    return value


def _unknown(key: str, known: list[str], where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else f" Known keys: {', '.join(known)}."
    return ConfigError(f"{where}: unknown setting '{key}'.{hint} (Unknown keys are an error so that a typo never goes unnoticed.)")


def from_dict(raw: dict, where: str = "config") -> Config:
    """Build a Config from a nested dict, refusing unknown sections and keys."""
    cfg = Config()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of sections (model, data, lora, train, rl).")
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
        setattr(target, key, _coerce(f"{section}.{key}", value, hints[key], fields[key].metadata, where))


TRACKERS = ("tensorboard", "wandb", "trackio", "mlflow")  # each is also the name of its package


def trackers(cfg: Config) -> list[str]:
    """train.report_to as the Trainer's list: [] for none."""
    names = [t.strip() for t in cfg.train.report_to.split(",") if t.strip()]
    return [] if names == ["none"] else names


def check(cfg: Config, where: str) -> Config:
    """Cross-field checks that one setting's type and range (declared on its knob) cannot express."""
    rules = [
        (
            all(t in TRACKERS for t in trackers(cfg)),
            f"train.report_to={cfg.train.report_to!r}: give none or some of {', '.join(TRACKERS)}, comma-separated",
        ),
        (
            cfg.train.rows_per_pass is None or cfg.train.batch_size % cfg.train.rows_per_pass == 0,
            "train.rows_per_pass must divide train.batch_size (or be null)",
        ),
        (
            not (cfg.lora.init == "pissa" and cfg.lora.use_dora),
            "lora.init=pissa cannot be combined with lora.use_dora=true: PEFT turns a PiSSA adapter into a plain LoRA for the "
            "original model by its A and B matrices alone, and DoRA's learned lengths have no such form",
        ),
        (
            not (cfg.lora.init == "pissa" and cfg.model.load_in_4bit),
            "lora.init=pissa cannot be combined with model.load_in_4bit=true: PiSSA takes its start out of full-precision weights, "
            "and the adapter saved for the original model would not match the 4-bit one it was trained on",
        ),
        (
            cfg.rl.overlong_buffer < cfg.rl.max_completion_length,
            f"rl.overlong_buffer ({cfg.rl.overlong_buffer}) must be less than rl.max_completion_length ({cfg.rl.max_completion_length}): "
            "the penalty grows over the last stretch before the limit",
        ),
    ]
    for ok, message in rules:
        if not ok:
            raise ConfigError(f"{where}: {message}.")
    return cfg


def load(path: str | Path | None, overrides: Sequence[str] = (), values: dict[str, Any] | None = None) -> Config:
    """Load a YAML config (or the defaults when path is None), apply `section.key=value` text
    overrides (--set), then typed `values` ({"train.lr": 3e-4}: what CLI flags set), each checked
    against its declared type, choices and range."""
    raw: dict = {} if path is None else _read_yaml(Path(path))
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


def load_recorded(path: str | Path) -> Config:
    """A config a run recorded (its config.yaml), maybe by another thinktune version: the settings
    this version does not know (renamed or removed since) are left out, so an older run folder
    stays readable (issue 17: a run's rl.use_vllm, since renamed rl.generator, made it unreadable).
    A config a user gives is read by `load`, where an unknown key is an error."""
    raw = _read_yaml(Path(path))
    known = {s: {f.name for f in dataclasses.fields(t)} for s, t in _SECTION_TYPES.items()}
    raw = {s: {k: v for k, v in values.items() if k in known[s]} if isinstance(values, dict) else values for s, values in raw.items() if s in known}
    return check(from_dict(raw, where=str(path)), str(path))


def _read_yaml(p: Path) -> dict:
    """The top-level mapping of a config file, or a ConfigError that names the file."""
    if not p.is_file():
        raise ConfigError(f"Config file {p} does not exist.")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"Config file {p} is not UTF-8 text (byte {e.start} cannot be decoded); save it as UTF-8.") from None
    except OSError as e:
        raise ConfigError(f"Config file {p} cannot be read: {e.strerror}.") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"Config file {p} is not valid YAML: {e}") from None
    if raw is None:  # an empty file (or only comments): the defaults
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"Config file {p}: expected a mapping of sections (model, data, lora, train, rl) at the top level, got a {type(raw).__name__}; "
            "see examples/medical_r1.yaml."
        )
    return raw


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
