"""Generation settings, defined once (eval, compare, generate, chat, the demo); light to import,
so the CLI builds its flags from it without loading torch."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .errors import UserError

# Why a generated output stopped, as results, reports and plots name it.
STOPS = {"eos": "ended by itself", "loop": "stopped repeating itself", "max_new_tokens": "cut by the token limit"}


@dataclass
class Decoding:
    """How text is generated: one definition for eval, compare, generate, chat and the demo.
    The defaults are DeepSeek's advice for R1 models; a command that differs says why."""

    max_new_tokens: int = 2048  # room for R1-style thinking before the answer
    temperature: float = 0.6  # 0 = greedy
    top_p: float = 0.95
    repetition_penalty: float = 1.0
    batch_size: int = 32  # rows generated at once (continuous batching: a finished row's slot is refilled at once)
    seed: int | None = 0  # None: a different sampling each time (chat)
    max_thinking_tokens: int | None = None  # close an open <think> after this many tokens (evaluate/budget.py); None: no limit
    stop_loops: bool = True  # stop an output that repeats one passage three times in a row (evaluate/loop.py)

    def __post_init__(self) -> None:
        # `not x >= 0` rather than `x < 0`: a NaN fails every comparison and must not pass as greedy
        bad_sampling = not 0 <= self.temperature < math.inf or not 0 < self.top_p <= 1 or not 0 < self.repetition_penalty < math.inf
        if self.max_thinking_tokens is not None and self.max_thinking_tokens < 0:
            raise UserError(f"--max-thinking-tokens {self.max_thinking_tokens}: give 0 or more (0 answers at once).")
        if self.max_new_tokens < 1 or self.batch_size < 1 or bad_sampling:
            raise UserError(
                f"Generation settings out of range (max_new_tokens {self.max_new_tokens}, batch_size {self.batch_size}, "
                f"temperature {self.temperature}, top_p {self.top_p}, repetition_penalty {self.repetition_penalty}): "
                "max new tokens and batch size must be at least 1, temperature 0 (greedy) or more and finite, top p in (0, 1], repetition penalty above 0 and finite."
            )

    def to_dict(self) -> dict:
        return asdict(self)
