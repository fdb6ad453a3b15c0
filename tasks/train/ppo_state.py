"""PPO's state: the value head, a rollout, everything a step changes, and the step-N checkpoints that
restore it exactly (adapter, value head, optimizer, KL controller, RNG).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tasks.core.config import RLConfig
from tasks.core.io import write_json
from tasks.train.ppo_core import AdaptiveKLController

log = logging.getLogger(__name__)


# Settings a run may change and still resume its checkpoint as if nothing happened.
RESUMABLE_CHANGES = frozenset(
    {"steps", "save_every", "prompts", "report_to", "rollout_batch_size", "rollout_compile"}
)
# Settings a resumed run takes from the new configuration (logged), not from the checkpoint.
APPLIED_ON_RESUME = frozenset({"learning_rate", "target_kl", "kl_horizon"})


def save_checkpoint(state: TrainState, path: Path) -> None:
    """PPO's LoRA adapter, value head, optimizer, KL controller, step and RNG state; trainer_state.json goes
    last.
    """
    path.mkdir(parents=True, exist_ok=True)
    state.policy.save_pretrained(str(path), save_embedding_layers=False)
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(
        {"value_head": state.value_head.state_dict(), "optimizer": state.optimizer.state_dict(), "rng": rng},
        path / "trainer.pt",
    )
    write_json(
        path / "trainer_state.json",
        {
            "step": state.step,
            "kl_ctl": state.kl_ctl.state_dict(),
            "rl_config": state.rl_cfg.model_dump(mode="json"),
        },
    )


def load_checkpoint(state: TrainState, path: Path) -> None:
    """Restore what save_checkpoint wrote (the adapter itself is loaded with the model)."""
    saved = torch.load(path / "trainer.pt", map_location=state.policy.device, weights_only=True)
    state.value_head.load_state_dict(saved["value_head"])
    state.optimizer.load_state_dict(saved["optimizer"])
    for group in state.optimizer.param_groups:  # the optimizer state would bring the old rate back
        group["lr"] = state.rl_cfg.learning_rate
    torch.set_rng_state(saved["rng"]["cpu"].cpu())
    if "cuda" in saved["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in saved["rng"]["cuda"]])
    meta = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    state.step = int(meta["step"])
    state.kl_ctl.load_state_dict(meta["kl_ctl"])
    now = state.rl_cfg.model_dump(mode="json")
    before = meta.get("rl_config", now)
    applied = sorted(k for k in APPLIED_ON_RESUME if k in before and now.get(k) != before[k])
    if applied:
        log.warning(
            "resuming %s with changed settings, applied from now on: %s",
            path,
            ", ".join(f"{k} {before[k]} -> {now[k]}" for k in applied),
        )
    changed = sorted(
        k for k, v in before.items() if k not in RESUMABLE_CHANGES | APPLIED_ON_RESUME and now.get(k) != v
    )
    if changed:
        log.warning(
            "resuming %s although rl settings changed since (%s); delete %s to start over",
            path,
            ", ".join(changed),
            path.parent,
        )


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The complete step-N checkpoint with the largest N, or None."""
    done = [
        p
        for p in ckpt_dir.glob("step-*")
        if re.fullmatch(r"step-\d+", p.name) and (p / "trainer_state.json").is_file()
    ]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


class ValueHead(torch.nn.Module):
    """Linear(hidden -> 1) in float32 on the policy's last hidden state; zero-initialised so V starts at 0."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.summary = torch.nn.Linear(hidden_size, 1, dtype=torch.float32)
        torch.nn.init.zeros_(self.summary.weight)
        torch.nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden.float()).squeeze(-1)


@dataclass
class Rollout:
    """One batch of sampled responses and what PPO needs about them (per-token tensors are [B, R])."""

    input_ids: torch.Tensor  # [B, P + R]: left-padded prompts, then responses
    attention_mask: torch.Tensor
    prompt_len: int
    mask: torch.Tensor  # 1 on response tokens up to and including the first EOS
    responses: list[str]
    logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None
    values: torch.Tensor | None = None
    entropy: torch.Tensor | None = None


@dataclass
class TrainState:
    """Everything a step changes or reads, and everything a checkpoint restores."""

    policy: Any  # peft.PeftModel: the merged SFT model with the trainable RL LoRA
    value_head: ValueHead
    optimizer: torch.optim.Optimizer
    kl_ctl: AdaptiveKLController
    tokenizer: Any
    rl_cfg: RLConfig
    max_prompt_tokens: int
    step: int = 0
