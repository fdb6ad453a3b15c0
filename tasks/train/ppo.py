"""PPO on a LoRA policy against the safety reward: rollouts, KL-penalised GAE, clipped updates, resume.

One copy of the weights: the SFT adapter is merged into the base, a fresh LoRA on top is the policy,
and the same model with that LoRA disabled is the frozen reference. A float32 linear value head reads
the last hidden state. The math lives in ppo_core.py, the state and checkpoints in ppo_state.py, the
shared RL files in rl_io.py; this file owns the loop.
Two KLs, one target in one unit (rl.target_kl, nats per response token): the adaptive penalty coefficient
steers the mean per-token KL(policy || reference) (the `kl_per_token` column; `kl_per_response`, the same
KL summed over each response as Ziegler et al. report it, is logged next to it), and the PPO epochs stop
early once the per-token approx KL between the sampling policy and the updated one passes 1.5x the target.

    summary = train_ppo(Path("data/rl/training_prompts.jsonl"), Path("models/base/tiny"),
                        Path("models/lora/final_lora"), Path("models/rl"), profile.rl, profile.model,
                        reward_fn=engine.as_reward_fn(), metadata={"teacher_enabled": False})
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from tasks.core.config import ModelConfig, RLConfig
from tasks.model.chat import build_chat_prompt, decode_completion
from tasks.model.loading import load_policy, load_tokenizer, lora_config
from tasks.train.ppo_core import (
    AdaptiveKLController,
    clipped_policy_loss,
    clipped_value_loss,
    compute_gae,
    entropy_from_logits,
    kl_penalty_rewards,
    logprobs_from_logits,
    masked_mean,
    masked_whiten,
)
from tasks.train.ppo_state import (
    Rollout,
    TrainState,
    ValueHead,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from tasks.train.rl_io import (
    BreakdownFn,
    RewardFn,
    append_row,
    breakdown_means,
    file_log,
    final_metadata,
    keep_rows,
    load_prompts,
    log_drift,
    plot_curves,
    read_rows,
    save_merged,
)

log = logging.getLogger(__name__)


def response_mask(response_ids: torch.Tensor, eos_ids: list[int]) -> torch.Tensor:
    """1 up to and including the first EOS of each row, 0 after it (generate pads there)."""
    is_eos = torch.isin(response_ids, torch.tensor(eos_ids, device=response_ids.device)).long()
    return ((is_eos.cumsum(1) - is_eos) == 0).float()


def forward_response(
    model, value_head, input_ids, attention_mask, prompt_len: int, temperature: float, entropy=False
):
    """Per-token logprobs (of the temperature-scaled distribution), values and entropy of the response
    part."""
    # Positions count real tokens only, exactly as generate() numbered them under left padding.
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    response_len = input_ids.shape[1] - prompt_len
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        output_hidden_states=value_head is not None,
        use_cache=False,
        logits_to_keep=response_len + 1,
    )
    logits = out.logits[:, :-1] / temperature  # position t predicts token t + 1
    logprobs = logprobs_from_logits(logits, input_ids[:, prompt_len:])
    values = value_head(out.hidden_states[-1][:, prompt_len - 1 : -1]) if value_head is not None else None
    return logprobs, values, entropy_from_logits(logits) if entropy else None


@torch.no_grad()
def sample_rollout(state: TrainState, questions: list[str]) -> Rollout:
    """Sample one response per question from the policy: full distribution (top_k off), rl
    temperature/top_p."""
    tok, cfg, policy = state.tokenizer, state.rl_cfg, state.policy
    chat = [build_chat_prompt(tok, q) for q in questions]
    cache = rollout_cache_kwargs(cfg.rollout_compile, policy.device)
    # A compiled static cache recompiles for every new prompt length: pad to a multiple of 64 instead.
    enc = tok(
        chat,
        return_tensors="pt",
        padding=True,
        padding_side="left",
        add_special_tokens=False,
        pad_to_multiple_of=STATIC_PAD if cache else None,
    )
    # Over-long prompts lose their start, never the open assistant turn at the end.
    enc = {k: v[:, -state.max_prompt_tokens :].to(policy.device) for k, v in enc.items()}
    eos = policy.generation_config.eos_token_id or tok.eos_token_id
    eos_ids = list(eos) if isinstance(eos, (list, tuple)) else [int(eos)]
    out = policy.generate(
        **enc,
        do_sample=True,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        top_k=0,
        max_new_tokens=cfg.max_new_tokens,
        eos_token_id=eos_ids,
        pad_token_id=tok.pad_token_id,
        **cache,
    )
    prompt_len = enc["input_ids"].shape[1]
    mask = response_mask(out[:, prompt_len:], eos_ids)
    lengths = mask.sum(1).long().tolist()
    responses = [
        decode_completion(tok, ids[:n]) for ids, n in zip(out[:, prompt_len:].tolist(), lengths, strict=True)
    ]
    return Rollout(out, torch.cat([enc["attention_mask"], mask.long()], dim=1), prompt_len, mask, responses)


STATIC_PAD = 64  # prompt lengths are padded to a multiple of this when rollouts are compiled


def rollout_cache_kwargs(mode: str, dev: torch.device) -> dict[str, Any]:
    """generate() options for rl.rollout_compile: a static KV cache, which transformers compiles (CUDA
    graphs) on a GPU by itself; `on` compiles on a CPU too. auto/off on a CPU: today's dynamic cache."""
    if mode == "off" or (mode == "auto" and dev.type != "cuda"):
        return {}
    from transformers import CompileConfig

    compile_config = CompileConfig(fullgraph=False, dynamic=False)
    compile_config._compile_all_devices = mode == "on"  # transformers compiles on GPUs only unless told
    return {"cache_implementation": "static", "compile_config": compile_config}


def split_rollout(rollout: Rollout, size: int) -> list[Rollout]:
    """A scored rollout of k * size rows as k rollouts of size rows (same padding, same tensors sliced)."""
    parts = []
    for lo in range(0, rollout.mask.shape[0], size):
        sl = slice(lo, lo + size)
        pick = {
            k: (None if getattr(rollout, k) is None else getattr(rollout, k)[sl])
            for k in ("logprobs", "ref_logprobs", "values", "entropy")
        }
        parts.append(
            Rollout(
                rollout.input_ids[sl],
                rollout.attention_mask[sl],
                rollout.prompt_len,
                rollout.mask[sl],
                rollout.responses[sl],
                **pick,
            )
        )
    return parts


@torch.no_grad()
def score_rollout(policy, value_head, rollout: Rollout, temperature: float) -> None:
    """Fill in old logprobs, values and entropy (adapter on) and reference logprobs (adapter off)."""
    args = (rollout.input_ids, rollout.attention_mask, rollout.prompt_len, temperature)
    rollout.logprobs, rollout.values, rollout.entropy = forward_response(
        policy, value_head, *args, entropy=True
    )
    with policy.disable_adapter():
        rollout.ref_logprobs, _, _ = forward_response(policy, None, *args)


def ppo_update(state: TrainState, rollout: Rollout, advantages, returns) -> dict[str, float]:
    """ppo_epochs passes of clipped updates over shuffled mini-batches; stops once the per-token approx KL
    between the sampling and the updated policy passes 1.5 x target_kl (both in nats per token)."""
    cfg, opt = state.rl_cfg, state.optimizer
    params = [p for group in opt.param_groups for p in group["params"]]
    stats: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "clip_frac": [], "approx_kl": []}
    for _epoch in range(cfg.ppo_epochs):
        for idx in torch.randperm(rollout.mask.shape[0]).split(cfg.mini_batch_size):
            logprobs, values, _ = forward_response(
                state.policy,
                state.value_head,
                rollout.input_ids[idx],
                rollout.attention_mask[idx],
                rollout.prompt_len,
                cfg.temperature,
            )
            mask = rollout.mask[idx]
            pol = clipped_policy_loss(logprobs, rollout.logprobs[idx], advantages[idx], mask, cfg.cliprange)
            if (
                pol.approx_kl.item() > 1.5 * cfg.target_kl
            ):  # drifted too far from the sampling policy: no step
                return _mean_stats(stats, early_stopped=True)
            vloss, _ = clipped_value_loss(
                values, rollout.values[idx], returns[idx], mask, cfg.cliprange_value
            )
            opt.zero_grad(set_to_none=True)
            (pol.loss + cfg.vf_coef * vloss).backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            opt.step()
            for key, value in zip(stats, (pol.loss, vloss, pol.clip_frac, pol.approx_kl), strict=True):
                stats[key].append(value.item())
    return _mean_stats(stats, early_stopped=False)


def _mean_stats(stats: dict[str, list[float]], early_stopped: bool) -> dict[str, Any]:
    out: dict[str, Any] = {k: (sum(v) / len(v) if v else float("nan")) for k, v in stats.items()}
    return out | {"updates": len(stats["policy_loss"]), "early_stopped": early_stopped}


def ppo_step(
    state: TrainState,
    rows: list[dict],
    reward_fn: RewardFn | None,
    breakdown_fn: BreakdownFn | None,
    rollout: Rollout | None = None,
) -> dict[str, Any]:
    """One PPO step on a batch of prompt rows: sample, score, reward, GAE, update. Returns the log row.

    rollout: these rows' responses, already sampled and scored with the sampling policy (a share of a
    larger rollout batch, see rollout_batch); None samples them now."""
    cfg = state.rl_cfg
    questions = [row["question"] for row in rows]
    if rollout is None:
        rollout = sample_rollout(state, questions)
        score_rollout(state.policy, state.value_head, rollout, cfg.temperature)
    breakdown, scores = score_responses(questions, rollout.responses, rows, reward_fn, breakdown_fn)
    scores = scores.to(rollout.mask.device)
    kl_coef = state.kl_ctl.value
    rewards, kl = kl_penalty_rewards(scores, rollout.logprobs, rollout.ref_logprobs, rollout.mask, kl_coef)
    advantages, returns = compute_gae(rewards, rollout.values, rollout.mask, cfg.gamma, cfg.lam)
    update = ppo_update(state, rollout, masked_whiten(advantages, rollout.mask), returns)
    token_kl = masked_mean(kl, rollout.mask).item()  # nats per response token: the controller's unit
    seq_kl = kl.sum(1).mean().item()  # nats per response, as Ziegler et al. report it
    state.kl_ctl.update(token_kl, n_steps=1)
    return {
        "reward_mean": scores.mean().item(),
        "reward_std": scores.std(unbiased=False).item(),
        **breakdown_means(breakdown),
        "kl_per_token": token_kl,
        "kl_per_response": seq_kl,
        "kl_coef": kl_coef,
        "entropy": masked_mean(rollout.entropy, rollout.mask).item(),
        "policy_loss": update["policy_loss"],
        "value_loss": update["value_loss"],
        "clip_frac": update["clip_frac"],
        "response_len": rollout.mask.sum(1).mean().item(),
        "approx_kl": update["approx_kl"],
        "updates": update["updates"],
        "sample": rollout.responses[0],
    }


def score_responses(
    questions: list[str],
    responses: list[str],
    metas: list[dict],
    reward_fn: RewardFn | None,
    breakdown_fn: BreakdownFn | None,
) -> tuple[list[dict], torch.Tensor]:
    """Scores from the breakdown rows' `total` when there is a breakdown callable (one scoring pass), else
    reward_fn.
    """
    breakdown = breakdown_fn(questions, responses, metas) if breakdown_fn else []
    scores = [row["total"] for row in breakdown] if breakdown_fn else reward_fn(questions, responses, metas)
    if len(scores) != len(responses):
        raise ValueError(f"the reward function returned {len(scores)} scores for {len(responses)} responses")
    return breakdown, torch.tensor([float(s) for s in scores], dtype=torch.float32)


def train_ppo(
    prompts_path: Path,
    base_path: Path,
    sft_adapter: Path | None,
    out_dir: Path,
    rl_cfg: RLConfig,
    model_cfg: ModelConfig,
    reward_fn: RewardFn | None,
    breakdown_fn: BreakdownFn | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a PPO LoRA on base (+ merged SFT adapter), resuming from out_dir/checkpoints; save
    out_dir/final_model.
    """
    if reward_fn is None and breakdown_fn is None:
        raise ValueError("PPO needs a reward_fn or a breakdown_fn (whose rows carry `total`)")
    rows = load_prompts(Path(prompts_path), rl_cfg.prompts)
    total = rl_cfg.steps if rl_cfg.steps is not None else math.ceil(len(rows) / rl_cfg.batch_size)
    ckpt_dir, final_dir = Path(out_dir) / "checkpoints", Path(out_dir) / "final_model"
    csv_path = ckpt_dir / "rewards.csv"
    checkpoint = latest_checkpoint(ckpt_dir)
    state = build_state(Path(base_path), sft_adapter, rl_cfg, model_cfg, checkpoint)
    start = state.step
    if start > total:
        log.warning(
            "checkpoint step %d is past rl.steps=%d: saving it as the final model without training",
            start,
            total,
        )
    keep_rows(csv_path, upto_step=start)  # steps logged after the last checkpoint are redone
    board = tensorboard_writer(ckpt_dir / "runs" / "ppo", rl_cfg.report_to, purge_step=start + 1)
    ahead = (rl_cfg.rollout_batch_size or rl_cfg.batch_size) // rl_cfg.batch_size  # steps per generate call
    with file_log(ckpt_dir / "training.log", log):
        log.info(
            "PPO on %d prompts: steps %d..%d, batch %d, lr %.3g, target KL %.3g nats/token, kl_coef %.4g%s",
            len(rows),
            start + 1,
            total,
            rl_cfg.batch_size,
            rl_cfg.learning_rate,
            rl_cfg.target_kl,
            state.kl_ctl.value,
            f", resumed from {checkpoint}" if checkpoint else "",
        )
        pool: list[Rollout] = []  # sampled ahead for the next steps (rl.rollout_batch_size)
        for step in tqdm(range(start + 1, total + 1), initial=start, total=total, desc="ppo", unit="step"):
            batch = [rows[i] for i in batch_indices(len(rows), rl_cfg.batch_size, step, rl_cfg.seed)]
            if not pool and ahead > 1:
                pool = rollout_batch(state, rows, step, min(ahead, total - step + 1))
            row = ppo_step(state, batch, reward_fn, breakdown_fn, pool.pop(0) if pool else None)
            state.step = step
            append_row(csv_path, {"step": step, **row})
            log_drift(csv_path, row, log, step)  # the reward-hacking monitor's warnings
            if board is not None:
                for key, value in row.items():
                    if isinstance(value, (int, float)) and math.isfinite(value):
                        board.add_scalar(f"ppo/{key}", value, step)
                board.flush()
            log.info(
                "step %d reward %.4f+-%.4f kl %.4f/token %.3f/response kl_coef %.4g "
                "entropy %.3f approx_kl %.4f updates %d len %.1f | %r",
                step,
                row["reward_mean"],
                row["reward_std"],
                row["kl_per_token"],
                row["kl_per_response"],
                row["kl_coef"],
                row["entropy"],
                row["approx_kl"],
                row["updates"],
                row["response_len"],
                row["sample"][:80],
            )
            if step % rl_cfg.save_every == 0 or step == total:
                save_checkpoint(state, ckpt_dir / f"step-{step}")
        if board is not None:
            board.close()
        plot_curves(csv_path, ckpt_dir / "curves.png")
        save_merged(
            state.policy,
            state.tokenizer,
            final_dir,
            final_metadata(
                "ppo",
                total,
                len(rows),
                base_path,
                sft_adapter,
                rl_cfg,
                model_cfg,
                resumed_from_step=start,
                **(metadata or {}),
            ),
        )
    curve = read_rows(csv_path)
    return {
        "steps": total,
        "resumed_from_step": start,
        "final_model": str(final_dir),
        "rewards_csv": str(csv_path),
        "curves_png": str(ckpt_dir / "curves.png"),
        "reward_first": curve[0]["reward_mean"] if curve else None,
        "reward_last": curve[-1]["reward_mean"] if curve else None,
    }


def tensorboard_writer(log_dir: Path, report_to: list[str], purge_step: int):
    """A TensorBoard SummaryWriter when rl.report_to asks for one (None otherwise, or without tensorboard).

    purge_step: a resumed run's first step; events a crashed run logged from there on are dropped.
    """
    if "tensorboard" not in report_to:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning("rl.report_to has tensorboard but it is not installed (pip install tensorboard); skipped")
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def build_state(
    base_path: Path,
    sft_adapter: Path | None,
    rl_cfg: RLConfig,
    model_cfg: ModelConfig,
    checkpoint: Path | None,
) -> TrainState:
    """Merged SFT model + RL LoRA (fresh and seeded, or the checkpoint's), value head, AdamW, KL
    controller."""
    from peft import PeftModel, get_peft_model

    # Imported here, not at the top: tasks.train.sft imports Prefect, which the GPU benchmark machine lacks.

    max_prompt_tokens = model_cfg.max_seq_len - rl_cfg.max_new_tokens
    if max_prompt_tokens < 8 or rl_cfg.temperature <= 0:
        raise ValueError(
            f"need model.max_seq_len ({model_cfg.max_seq_len}) > rl.max_new_tokens "
            f"({rl_cfg.max_new_tokens}) + 8 and rl.temperature > 0 (got {rl_cfg.temperature})"
        )
    torch.manual_seed(rl_cfg.seed)
    tokenizer = load_tokenizer(base_path)
    model = load_policy(base_path, model_cfg, sft_adapter)
    if model_cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    if checkpoint is not None:
        policy = PeftModel.from_pretrained(model, str(checkpoint), is_trainable=True)
    else:
        policy = get_peft_model(model, lora_config(rl_cfg.lora))
    policy.train(model_cfg.gradient_checkpointing)  # checkpointing only acts in train mode
    for module in policy.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()  # dropout off (LoRA's too): old and new logprobs must agree before the first update
    value_head = ValueHead(model.config.hidden_size).to(policy.device)
    params = [p for p in policy.parameters() if p.requires_grad] + list(value_head.parameters())
    optimizer = torch.optim.AdamW(params, lr=rl_cfg.learning_rate)
    kl_ctl = AdaptiveKLController(rl_cfg.init_kl_coef, rl_cfg.target_kl, rl_cfg.kl_horizon)
    state = TrainState(policy, value_head, optimizer, kl_ctl, tokenizer, rl_cfg, max_prompt_tokens)
    if checkpoint is not None:
        load_checkpoint(state, checkpoint)
    return state


@torch.no_grad()
def rollout_batch(state: TrainState, rows: list[dict], step: int, n_steps: int) -> list[Rollout]:
    """The rollouts of steps step..step+n_steps-1 from one generate call and one scoring pass (old logprobs,
    values, reference logprobs of the sampling policy); each step then updates on its own share."""
    cfg = state.rl_cfg
    questions = [
        rows[i]["question"]
        for s in range(step, step + n_steps)
        for i in batch_indices(len(rows), cfg.batch_size, s, cfg.seed)
    ]
    rollout = sample_rollout(state, questions)
    score_rollout(state.policy, state.value_head, rollout, cfg.temperature)
    return split_rollout(rollout, cfg.batch_size)


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Prompt indices of 1-based step: consecutive slices of a seeded permutation, a fresh one per pass."""
    out = []
    for j in range((step - 1) * batch_size, step * batch_size):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + j // n))
        out.append(int(perm[j % n]))
    return out
