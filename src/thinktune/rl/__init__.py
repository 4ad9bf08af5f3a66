"""Stage two, `thinktune rl`: reinforcement learning with verifiable rewards (GRPO) on top of SFT."""
