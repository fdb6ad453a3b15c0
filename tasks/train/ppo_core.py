"""PPO for language models, the math only: pure torch functions small enough to check by hand.

Shapes: `[batch, response_len]` for per-token tensors; `mask` is 1 on real response tokens and 0 on
padding. The recipe follows Ziegler et al. 2019 ("Fine-Tuning Language Models from Human
Preferences"): a per-token KL penalty plus the sequence reward on the last token, GAE on a learned
value, clipped policy and value losses, and an adaptive KL coefficient (a faster-acting controller than
Ziegler's, see AdaptiveKLController).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Log-probability of each label under its logits ([B, T, V], [B, T] -> [B, T]), in float32."""
    logits = logits.float()
    picked = torch.gather(logits, -1, labels.unsqueeze(-1)).squeeze(-1)
    # logsumexp instead of log_softmax: never materialises a second [B, T, V] tensor.
    return picked - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of each next-token distribution ([B, T, V] -> [B, T]), in float32."""
    logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over positions where mask is 1 (all of them, or along `dim`)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of x over masked positions; unbiased (n-1) by default, like torch.var."""
    mask = mask.to(x.dtype)
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    n = mask.sum()
    if unbiased and n > 1:
        var = var * n / (n - 1)
    return var


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """Normalise x to unit variance (and zero mean when shift_mean) over masked positions; padding -> 0."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(x.dtype)


def kl_k1(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token KL estimate k1 = log pi(a) - log pi_ref(a) for tokens sampled from pi.

    k1 is the one estimator whose sum over a sampled response is an unbiased estimate of the sequence
    KL(pi || pi_ref) *and* which, used as a reward, gives the policy gradient of E[R] - beta * KL
    (Ziegler et al.; Stiennon et al.). The k2/k3 estimators are lower-variance estimates of the KL's
    value but change the gradient when put in the reward. Single tokens may be negative.
    """
    return logprobs - ref_logprobs


def kl_penalty_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: -kl_coef * k1 on every response token, plus the score on the last real one.

    Returns (rewards [B, T], k1 [B, T]), both zero on padding.
    """
    mask = mask.to(logprobs.dtype)
    kl = kl_k1(logprobs, ref_logprobs) * mask
    rewards = -kl_coef * kl
    positions = torch.arange(mask.shape[1], device=mask.device).expand_as(mask)
    last = (positions * mask).argmax(dim=1)  # index of the last real token in each row
    has_tokens = mask.sum(1) > 0
    rows = torch.arange(mask.shape[0], device=mask.device)[has_tokens]
    rewards[rows, last[has_tokens]] += scores.to(rewards.dtype)[has_tokens]
    return rewards, kl


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over the masked tokens of each row.

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}, where t+1 is the
    next *real* token (padding is skipped, and the value after the last real token is 0).
    Returns (advantages, returns = advantages + values), both zero on padding; not whitened.
    """
    mask = mask.to(values.dtype)
    rewards, values = rewards * mask, values * mask
    advantages = torch.zeros_like(values)
    next_value = torch.zeros(values.shape[0], dtype=values.dtype, device=values.device)
    next_adv = torch.zeros_like(next_value)
    for t in reversed(range(values.shape[1])):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv_t = delta + gamma * lam * next_adv
        advantages[:, t] = adv_t * m
        # On padding keep carrying the successor's value and advantage unchanged.
        next_value = m * values[:, t] + (1 - m) * next_value
        next_adv = m * adv_t + (1 - m) * next_adv
    return advantages, (advantages + values) * mask


@dataclass(frozen=True)
class PolicyLoss:
    loss: torch.Tensor
    clip_frac: torch.Tensor
    approx_kl: torch.Tensor


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    cliprange: float,
) -> PolicyLoss:
    """PPO-clip surrogate: mean of max(-A * r, -A * clip(r, 1 - eps, 1 + eps)) with r = pi / pi_old.

    clip_frac is the share of tokens where the clipped term was the larger (the gradient is cut);
    approx_kl is Schulman's k3 estimate of KL(pi_old || pi), E[(r - 1) - log r], never negative.
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_frac = masked_mean((clipped > unclipped).to(logprobs.dtype), mask)
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask)
    return PolicyLoss(loss, clip_frac, approx_kl)


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    cliprange_value: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """0.5 * mean of max((V - R)^2, (clip(V, V_old +- eps) - R)^2); returns (loss, share clipped)."""
    clipped_values = old_values + torch.clamp(values - old_values, -cliprange_value, cliprange_value)
    losses = (values - returns) ** 2
    losses_clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(losses, losses_clipped), mask)
    with torch.no_grad():
        clip_frac = masked_mean((losses_clipped > losses).to(values.dtype), mask)
    return loss, clip_frac


class AdaptiveKLController:
    """A proportional controller on log(beta) that holds the measured KL near `target` within tens of steps.

    After each PPO step: beta *= exp(clip(KL / target - 1, -1, 1) / horizon), then beta is kept inside
    [min_coef, max_coef]. `horizon` counts PPO steps: under a full-scale error beta changes e-fold in
    `horizon` steps (x1.105 a step at horizon 10), and inside the band target * (1 +- 0.5) at most half
    that. This is Ziegler et al.'s controller with two changes that make it act at the plan's batch of 4:
    the horizon counts steps, not episodes (TRL's 10,000 episodes at 4 a step moved beta by at most
    0.008% a step), and the error is clipped at +-1 instead of +-0.2. The unit of `target` is whatever the
    caller measures KL in; PPO uses nats per response token (see tasks/train/ppo.py).
    """

    def __init__(
        self,
        init_kl_coef: float,
        target: float,
        horizon: float,
        min_coef: float = 1e-3,
        max_coef: float = 10.0,
    ) -> None:
        if target <= 0 or horizon <= 0 or not 0 < min_coef <= max_coef:
            raise ValueError(
                f"target ({target}), horizon ({horizon}) and 0 < min_coef ({min_coef}) <= max_coef "
                f"({max_coef}) must hold"
            )
        self.target, self.horizon = float(target), float(horizon)
        self.min_coef, self.max_coef = float(min_coef), float(max_coef)
        self.value = min(max(float(init_kl_coef), self.min_coef), self.max_coef)

    def update(self, current_kl: float, n_steps: int = 1) -> float:
        """Move beta after `n_steps` PPO steps whose KL (in the target's unit) was `current_kl`."""
        error = min(max(current_kl / self.target - 1.0, -1.0), 1.0)
        self.value *= math.exp(error * n_steps / self.horizon)
        self.value = min(max(self.value, self.min_coef), self.max_coef)
        return self.value

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class FixedKLController:
    """A constant KL coefficient (same interface as AdaptiveKLController)."""

    def __init__(self, kl_coef: float) -> None:
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])
