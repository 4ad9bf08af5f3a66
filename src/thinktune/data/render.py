"""Stage 3, render: the prompt through the model's own chat template, the reasoning by hand.

Why not put the reasoning in the assistant message and call `apply_chat_template` once: the
official DeepSeek-R1-Distill template keeps only what follows `</think>` in an assistant turn
(`content.split('</think>')[-1]`), so the rendered example would silently lose its reasoning and
the model would learn to answer without thinking. We render only the prompt with the template
(`add_generation_prompt=True`) and append `<think>\\n{reasoning}\\n</think>\\n\\n{answer}`.
Template revisions differ: some generation prompts already end with `<think>\\n`; both work.
"""

from __future__ import annotations

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"  # the one definition of the think tags

# For base models without a chat template (documented in the README).
PLAIN_SYSTEM = "{system}\n\n"
PLAIN_USER = "### Question:\n{content}\n\n"
PLAIN_ASSISTANT = "### Answer:\n{content}\n\n"
PLAIN_GENERATION = "### Answer:\n"


def opens_think(prompt: str) -> bool:
    """Does the rendered prompt already open the thinking (template revisions that end the
    generation prompt with `<think>`)? Then the model's output starts inside it.

    >>> opens_think("<｜Assistant｜><think>\\n"), opens_think("<｜Assistant｜>")
    (True, False)
    """
    return prompt.rstrip().endswith(THINK_OPEN)


def has_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer, messages: list[dict]) -> str:
    """The prompt text up to where the model starts writing (special tokens as text)."""
    if has_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    parts = []
    for m in messages:
        if m["role"] == "system":
            parts.append(PLAIN_SYSTEM.format(system=m["content"]))
        elif m["role"] == "user":
            parts.append(PLAIN_USER.format(content=m["content"]))
        else:
            parts.append(PLAIN_ASSISTANT.format(content=m["content"].split(THINK_CLOSE)[-1].strip()))
    return "".join(parts) + PLAIN_GENERATION


def render_completion(prompt: str, cot: str, response: str) -> str:
    """What the model is trained to write after `prompt` (without the end token).

    >>> render_completion("<|Assistant|>", "Think.", "Answer.")
    '<think>\\nThink.\\n</think>\\n\\nAnswer.'
    >>> render_completion("<|Assistant|><think>\\n", "Think.", "Answer.")
    'Think.\\n</think>\\n\\nAnswer.'
    """
    body = f"{cot}\n{THINK_CLOSE}\n\n{response}"
    if not opens_think(prompt):
        return f"{THINK_OPEN}\n{body}"
    return body if prompt.endswith("\n") else "\n" + body


def answer_prefix(completion: str, response: str) -> str:
    """The part of the completion before the answer (used to count rows that lose their answer)."""
    return completion[: len(completion) - len(response)]
