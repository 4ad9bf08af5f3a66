"""thinktune: LoRA fine-tuning of reasoning models on chain-of-thought data, measured."""

__version__ = "0.1.0"
