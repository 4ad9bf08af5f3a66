"""The settings form, made from the config's own knobs (config.knob): one field per setting, its
one-sentence help, its choices; the values go back through `--set`'s parser and the config's own
checks, so the page refuses what the CLI refuses, in the same words.

>>> cfg = to_config({"lora.r": "32", "train.packing": True, "lora.target_modules": "q_proj, k_proj"})
>>> cfg.lora.r, cfg.train.packing, cfg.lora.target_modules
(32, True, ['q_proj', 'k_proj'])
>>> to_config({"lora.r": "0"})
Traceback (most recent call last):
...
thinktune.errors.ConfigError: the page's settings: 'lora.r' must be at least 1, got 0.
>>> set_args(to_config({"lora.r": "32", "model.name": "smollm2-demo"}))
['--set', 'model.name=smollm2-demo', '--set', 'lora.r=32']
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .. import config as config_mod


@dataclass
class Field:
    name: str  # section.key
    kind: str  # bool | choice | text
    default: Any
    help: str
    choices: tuple | None = None


def fields() -> list[Field]:
    """Every setting of the SFT stage the page runs, in the order of `--help` (rl.* belongs to
    `thinktune rl`, a command of its own, not on the page yet)."""
    out = []
    for name, f, typ in config_mod.knobs():
        if name.startswith("rl."):
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        choices = f.metadata.get("choices")
        kind = "bool" if typ is bool else "choice" if choices else "text"
        out.append(Field(name, kind, default, f.metadata["help"], choices))
    return out


def as_text(value: Any) -> str:
    """A value as the page's text box shows it, which `--set` reads back the same."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value)


def values_of(cfg) -> dict[str, Any]:
    """The form's values for a Config: booleans and choices as they are, the rest as text."""
    d = cfg.to_dict()
    kinds = {f.name: f.kind for f in fields()}
    out = {}
    for name, kind in kinds.items():
        section, key = name.split(".", 1)
        value = d[section][key]
        out[name] = value if kind in ("bool", "choice") else as_text(value)
    return out


def to_config(values: dict[str, Any]):
    """The Config of the form's values (missing ones keep their defaults): text is read as
    `--set section.key=value` reads it, then every check of the config applies."""
    sets = []
    for name, value in values.items():
        if isinstance(value, bool):
            value = "true" if value else "false"
        text = str(value).strip()
        if name == "lora.target_modules":
            text = ",".join(part.strip() for part in text.split(","))
        sets.append(f"{name}={text}")
    try:
        return config_mod.load(None, sets)
    except config_mod.ConfigError as e:
        raise config_mod.ConfigError(str(e).replace("--set ", "the page's settings: ", 1).replace("config: ", "the page's settings: ", 1)) from None


def set_args(cfg) -> list[str]:
    """The `--set` flags that turn the defaults into `cfg` (what differs, in knob order)."""
    default = config_mod.Config().to_dict()
    d = cfg.to_dict()
    out = []
    for f in fields():
        section, key = f.name.split(".", 1)
        if d[section][key] != default[section][key]:
            value = d[section][key]
            out += ["--set", f"{f.name}={'true' if value is True else 'false' if value is False else as_text(value).replace(', ', ',')}"]
    return out
