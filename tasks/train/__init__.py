"""Training stages: the base model, LoRA SFT, and RL (our PPO, TRL's GRPO) against the reward."""
