"""thinktune: LoRA fine-tuning of reasoning models on chain-of-thought data, measured.

The Python API (the CLI is a thin layer over it):

- `thinktune.train(config, on_event=...)`: fine-tune (sft.train); returns a Result.
- `thinktune.evaluate_model(...)`, `thinktune.compare(...)`: score a model, or base vs fine-tune.
- `thinktune.load_config(path, overrides)`: a Config from YAML and `section.key=value` strings.
- `thinktune.Decoding(...)`: generation settings (budget, sampling, thinking budget) for the two above.
- `thinktune.events`: the progress events `on_event` receives.
"""

__version__ = "0.1.0"

__all__ = ["train", "evaluate_model", "compare", "load_config", "Decoding", "__version__"]


def __getattr__(name: str):
    # Imported on first use: `thinktune --help` should not wait for torch.
    if name == "train":
        from .sft import train

        return train
    if name in ("evaluate_model", "compare"):
        from .evaluate import api

        return getattr(api, name)
    if name == "events":
        import importlib  # not `from . import events`: its hasattr check would come back here

        return importlib.import_module(".events", __name__)
    if name == "Decoding":
        from .decoding import Decoding

        return Decoding
    if name == "load_config":
        from .config import load

        return load
    raise AttributeError(f"module 'thinktune' has no attribute {name!r}")
