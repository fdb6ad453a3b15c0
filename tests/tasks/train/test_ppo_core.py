from __future__ import annotations

import math

import pytest
import torch

from tasks.train.ppo_core import (
    AdaptiveKLController,
    FixedKLController,
    clipped_policy_loss,
    clipped_value_loss,
    compute_gae,
    entropy_from_logits,
    kl_k1,
    kl_penalty_rewards,
    logprobs_from_logits,
    masked_mean,
    masked_var,
    masked_whiten,
)


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_logprobs_from_logits_matches_log_softmax_and_entropy_of_uniform_is_log_v():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 7)
    labels = torch.randint(0, 7, (2, 3))
    expected = torch.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(logprobs_from_logits(logits, labels), expected, atol=1e-6)
    assert torch.allclose(entropy_from_logits(torch.zeros(1, 2, 8)), torch.full((1, 2), math.log(8)))


def test_masked_mean_var_ignore_padding():
    x, mask = t([[1.0, 2.0, 3.0, 4.0, 100.0]]), t([[1, 1, 1, 1, 0]])
    assert masked_mean(x, mask).item() == pytest.approx(2.5)
    assert masked_var(x, mask).item() == pytest.approx(5 / 3)  # (2.25 + .25 + .25 + 2.25) / 3
    assert masked_var(x, mask, unbiased=False).item() == pytest.approx(1.25)


def test_masked_whiten_hand_values():
    x, mask = t([[1.0, 2.0, 3.0, 4.0, 100.0]]), t([[1, 1, 1, 1, 0]])
    std = math.sqrt(5 / 3)
    expected = [(-1.5) / std, (-0.5) / std, 0.5 / std, 1.5 / std, 0.0]
    assert masked_whiten(x, mask)[0].tolist() == pytest.approx(expected, abs=1e-5)
    kept = masked_whiten(x, mask, shift_mean=False)[0].tolist()
    assert kept[:4] == pytest.approx([v + 2.5 for v in expected[:4]], abs=1e-5)


def test_gae_gamma1_lambda095_hand_computed():
    rewards = t([[0.0, 0.0, 1.0, 0.0], [0.1, -0.5, 0.0, 0.0]])
    values = t([[0.5, 0.2, 0.4, 9.0], [1.0, -1.0, 3.0, 3.0]])  # 9.0 / 3.0 sit on padding
    mask = t([[1, 1, 1, 0], [1, 1, 0, 0]])
    adv, ret = compute_gae(rewards, values, mask, gamma=1.0, lam=0.95)
    # row 0: d2 = 1 - .4 = .6; d1 = .4 - .2 = .2, A1 = .2 + .95*.6 = .77; d0 = .2 - .5 = -.3, A0 = -.3 +
    # .95*.77
    assert adv[0].tolist() == pytest.approx([0.4315, 0.77, 0.6, 0.0], abs=1e-6)
    assert ret[0].tolist() == pytest.approx([0.9315, 0.97, 1.0, 0.0], abs=1e-6)
    # row 1: d1 = -.5 + 0 + 1 = .5; d0 = .1 - 1 - 1 = -1.9, A0 = -1.9 + .95*.5
    assert adv[1].tolist() == pytest.approx([-1.425, 0.5, 0.0, 0.0], abs=1e-6)
    assert ret[1].tolist() == pytest.approx([-0.425, -0.5, 0.0, 0.0], abs=1e-6)


def test_gae_discount_and_a_hole_in_the_mask_is_skipped():
    rewards, values = t([[0.0, 5.0, 1.0]]), t([[0.5, 7.0, 0.4]])
    adv, _ = compute_gae(rewards, values, t([[1, 0, 1]]), gamma=0.9, lam=0.5)
    # the masked middle token is invisible: d2 = 1 - .4 = .6; d0 = 0 + .9*.4 - .5 = -.14, A0 = -.14 + .45*.6
    assert adv[0].tolist() == pytest.approx([0.13, 0.0, 0.6], abs=1e-6)


@pytest.mark.parametrize(
    ("adv", "ratio", "loss", "clipped"),
    [
        (1.0, 1.1, -1.1, False),  # inside the range
        (2.0, 0.9, -1.8, False),  # inside, negative side of 1
        (1.0, 1.5, -1.2, True),  # A > 0, ratio above 1 + eps: capped at 1.2
        (1.0, 0.5, -0.5, False),  # A > 0, ratio below 1 - eps: unclipped term is the pessimistic one
        (-1.0, 1.5, 1.5, False),  # A < 0, ratio above 1 + eps: unclipped is pessimistic
        (-1.0, 0.5, 0.8, True),  # A < 0, ratio below 1 - eps: floored at 0.8
    ],
)
def test_clipped_policy_loss_cases(adv, ratio, loss, clipped):
    old = t([[-1.0, -3.0]])
    new = (old + t([[math.log(ratio), 0.0]])).requires_grad_()
    out = clipped_policy_loss(new, old, t([[adv, 0.0]]), t([[1, 0]]), cliprange=0.2)
    assert out.loss.item() == pytest.approx(loss, abs=1e-6)
    assert out.clip_frac.item() == (1.0 if clipped else 0.0)
    assert out.approx_kl.item() == pytest.approx((ratio - 1) - math.log(ratio), abs=1e-6)
    out.loss.backward()
    # a clipped token passes no gradient; an unclipped one passes d(-A r)/d logp = -A r
    assert new.grad[0, 0].item() == pytest.approx(0.0 if clipped else -adv * ratio, abs=1e-6)
    assert new.grad[0, 1].item() == 0.0


def test_clipped_policy_loss_averages_over_masked_tokens():
    old = t([[0.0, 0.0, 0.0]])
    new = t([[math.log(1.1), math.log(1.5), math.log(0.5)]])
    out = clipped_policy_loss(new, old, t([[1.0, 1.0, -1.0]]), t([[1, 1, 1]]), cliprange=0.2)
    assert out.loss.item() == pytest.approx((-1.1 - 1.2 + 0.8) / 3, abs=1e-6)
    assert out.clip_frac.item() == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("value", "old", "ret", "loss", "clipped"),
    [
        (0.6, 0.5, 2.0, 0.5 * 1.4**2, False),  # inside the range: plain squared error
        (1.0, 0.5, 2.0, 0.5 * 1.3**2, True),  # clipped to 0.7, which is farther from the return
        (1.0, 0.5, 0.0, 0.5 * 1.0**2, False),  # clipped to 0.7 would be closer: unclipped wins
    ],
)
def test_clipped_value_loss_cases(value, old, ret, loss, clipped):
    out, frac = clipped_value_loss(t([[value, 42.0]]), t([[old, 0.0]]), t([[ret, 0.0]]), t([[1, 0]]), 0.2)
    assert out.item() == pytest.approx(loss, abs=1e-6)
    assert frac.item() == (1.0 if clipped else 0.0)


def test_kl_penalty_rewards_put_score_on_last_real_token():
    logp = t([[-1.0, -2.0, -0.5, 0.0], [-1.0, -1.0, -1.0, -1.0]])
    ref = t([[-1.5, -1.0, -0.5, -3.0], [-1.0, -1.0, -1.0, -1.0]])
    mask = t([[1, 1, 1, 0], [0, 0, 0, 0]])
    rewards, kl = kl_penalty_rewards(t([2.0, 5.0]), logp, ref, mask, kl_coef=0.1)
    assert kl[0].tolist() == pytest.approx([0.5, -1.0, 0.0, 0.0])
    assert rewards[0].tolist() == pytest.approx([-0.05, 0.1, 2.0, 0.0])
    assert rewards[1].tolist() == [0.0, 0.0, 0.0, 0.0]  # an empty response gets nothing to hold a score


def test_k1_is_an_unbiased_estimate_of_kl():
    gen = torch.Generator().manual_seed(0)
    p = torch.tensor([0.6, 0.3, 0.1])
    q = torch.tensor([0.2, 0.5, 0.3])
    samples = torch.multinomial(p, 200_000, replacement=True, generator=gen)
    estimate = kl_k1(p.log()[samples], q.log()[samples]).mean().item()
    exact = (p * (p / q).log()).sum().item()
    assert estimate == pytest.approx(exact, abs=0.01)
    assert kl_k1(q.log()[samples], q.log()[samples]).abs().max().item() == 0.0


def test_adaptive_kl_controller_update_sequence():
    ctl = AdaptiveKLController(init_kl_coef=0.05, target=0.1, horizon=10)
    seq = [ctl.update(kl) for kl in (0.5, 0.1, 0.0, 0.11)]
    # errors clipped to +1, 0, -1, +.1 -> multipliers e^.1, 1, e^-.1, e^.01
    assert seq == pytest.approx([0.05 * math.exp(0.1), 0.05 * math.exp(0.1), 0.05, 0.05 * math.exp(0.01)])
    again = AdaptiveKLController(init_kl_coef=1.0, target=0.1, horizon=10)
    again.load_state_dict(ctl.state_dict())
    assert again.value == pytest.approx(0.05 * math.exp(0.01))
    with pytest.raises(ValueError):
        AdaptiveKLController(0.05, target=0.0, horizon=10)


def test_adaptive_kl_controller_stays_inside_its_bounds():
    ctl = AdaptiveKLController(0.05, target=0.1, horizon=1, min_coef=0.01, max_coef=1.0)
    assert [ctl.update(0.0) for _ in range(5)][-1] == pytest.approx(0.01)  # KL far below: floor, not 0
    assert [ctl.update(10.0) for _ in range(10)][-1] == pytest.approx(1.0)


def _closed_loop(ctl, steps: int = 80, seed: int = 0) -> list[float]:
    """A synthetic policy whose per-token KL is inversely proportional to the penalty it trained under on
    the previous step (KL 1.0, ten times the target, at the starting beta 0.05), with log-normal noise."""
    rng, kls, beta_before = torch.Generator().manual_seed(seed), [], ctl.value
    for _ in range(steps):
        kl = 0.05 / beta_before * math.exp(0.2 * torch.randn(1, generator=rng).item())
        beta_before = ctl.value
        ctl.update(kl)
        kls.append(kl)
    return kls


def test_adaptive_kl_controller_brings_kl_into_the_band_within_tens_of_steps():
    kls = _closed_loop(AdaptiveKLController(0.05, target=0.1, horizon=10))
    assert kls[0] > 0.5  # starts ten times over the target
    settled = kls[30:]
    inside = sum(0.05 <= k <= 0.15 for k in settled) / len(settled)
    assert inside >= 0.8, [round(k, 3) for k in kls]
    # Ziegler/TRL's horizon of 10,000 episodes (4 a step, error clipped at +-0.2) never gets there.
    old, kls_old = 0.05, []
    for _ in range(80):
        kl = 0.05 / old
        kls_old.append(kl)
        old *= 1 + min(max(kl / 0.1 - 1, -0.2), 0.2) * 4 / 10000
    assert min(kls_old) > 0.9


def test_fixed_kl_controller_never_moves():
    ctl = FixedKLController(0.05)
    assert [ctl.update(k, 4) for k in (10.0, 0.0)] == [0.05, 0.05]
