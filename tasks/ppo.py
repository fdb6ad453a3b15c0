"""PPO on a LoRA policy against the safety reward: rollouts, KL-penalised GAE, clipped updates, resume.

One copy of the weights: the SFT adapter is merged into the base, a fresh LoRA on top is the policy,
and the same model with that LoRA disabled is the frozen reference. A float32 linear value head reads
the last hidden state. The math lives in tasks/ppo_core.py; this file owns the loop and its files.
Two KLs, one target (rl.target_kl): the adaptive penalty coefficient steers KL(policy || reference)
summed over a response (nats per response, Ziegler et al.'s unit; the `kl` column), and the PPO epochs
stop early once the per-token approx KL between the sampling policy and the updated one passes 1.5x it.

    summary = train_ppo(Path("data/rl/training_prompts.jsonl"), Path("models/base/tiny"),
                        Path("models/lora/final_lora"), Path("models/rl"), profile.rl, profile.model,
                        reward_fn=engine.as_reward_fn(), metadata={"teacher_enabled": False})
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from prefect import get_run_logger, task
from tqdm.auto import tqdm

from flows.config import ModelConfig, RLConfig, Workdir
from tasks.caching import STAGE_CACHE
from tasks.errors import StageFailed
from tasks.io import read_jsonl, write_json
from tasks.modeling import build_chat_prompt, decode_completion, load_policy, load_tokenizer
from tasks.ppo_core import (
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
from tasks.sft import lora_config

log = logging.getLogger(__name__)

RewardFn = Callable[[list[str], list[str], list[dict]], list[float]]
BreakdownFn = Callable[[list[str], list[str], list[dict]], list[dict]]
# Settings a run may change and still resume its checkpoint as if nothing happened.
RESUMABLE_CHANGES = frozenset({"steps", "save_every", "prompts"})
CSV_COLUMNS = ["step", "reward_mean", "reward_std", "rules_mean", "teacher_mean", "violations", "kl", "kl_coef",
               "entropy", "policy_loss", "value_loss", "clip_frac", "response_len"]


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


def response_mask(response_ids: torch.Tensor, eos_ids: list[int]) -> torch.Tensor:
    """1 up to and including the first EOS of each row, 0 after it (generate pads there)."""
    is_eos = torch.isin(response_ids, torch.tensor(eos_ids, device=response_ids.device)).long()
    return ((is_eos.cumsum(1) - is_eos) == 0).float()


def forward_response(model, value_head, input_ids, attention_mask, prompt_len: int, temperature: float, entropy=False):
    """Per-token logprobs (of the temperature-scaled distribution), values and entropy of the response part."""
    # Positions count real tokens only, exactly as generate() numbered them under left padding.
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    response_len = input_ids.shape[1] - prompt_len
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                output_hidden_states=value_head is not None, use_cache=False, logits_to_keep=response_len + 1)
    logits = out.logits[:, :-1] / temperature  # position t predicts token t + 1
    logprobs = logprobs_from_logits(logits, input_ids[:, prompt_len:])
    values = value_head(out.hidden_states[-1][:, prompt_len - 1 : -1]) if value_head is not None else None
    return logprobs, values, entropy_from_logits(logits) if entropy else None


@torch.no_grad()
def sample_rollout(state: TrainState, questions: list[str]) -> Rollout:
    """Sample one response per question from the policy: full distribution (top_k off), rl temperature/top_p."""
    tok, cfg, policy = state.tokenizer, state.rl_cfg, state.policy
    chat = [build_chat_prompt(tok, q) for q in questions]
    enc = tok(chat, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    # Over-long prompts lose their start, never the open assistant turn at the end.
    enc = {k: v[:, -state.max_prompt_tokens :].to(policy.device) for k, v in enc.items()}
    eos = policy.generation_config.eos_token_id or tok.eos_token_id
    eos_ids = list(eos) if isinstance(eos, (list, tuple)) else [int(eos)]
    out = policy.generate(**enc, do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0,
                          max_new_tokens=cfg.max_new_tokens, eos_token_id=eos_ids, pad_token_id=tok.pad_token_id)
    prompt_len = enc["input_ids"].shape[1]
    mask = response_mask(out[:, prompt_len:], eos_ids)
    lengths = mask.sum(1).long().tolist()
    responses = [decode_completion(tok, ids[:n]) for ids, n in zip(out[:, prompt_len:].tolist(), lengths, strict=True)]
    return Rollout(out, torch.cat([enc["attention_mask"], mask.long()], dim=1), prompt_len, mask, responses)


@torch.no_grad()
def score_rollout(policy, value_head, rollout: Rollout, temperature: float) -> None:
    """Fill in old logprobs, values and entropy (adapter on) and reference logprobs (adapter off)."""
    args = (rollout.input_ids, rollout.attention_mask, rollout.prompt_len, temperature)
    rollout.logprobs, rollout.values, rollout.entropy = forward_response(policy, value_head, *args, entropy=True)
    with policy.disable_adapter():
        rollout.ref_logprobs, _, _ = forward_response(policy, None, *args)


def ppo_update(state: TrainState, rollout: Rollout, advantages, returns) -> dict[str, float]:
    """ppo_epochs passes of clipped updates over shuffled mini-batches; stops once approx KL > 1.5 x target_kl."""
    cfg, opt = state.rl_cfg, state.optimizer
    params = [p for group in opt.param_groups for p in group["params"]]
    stats: dict[str, list[float]] = {"policy_loss": [], "value_loss": [], "clip_frac": [], "approx_kl": []}
    for _epoch in range(cfg.ppo_epochs):
        for idx in torch.randperm(rollout.mask.shape[0]).split(cfg.mini_batch_size):
            logprobs, values, _ = forward_response(state.policy, state.value_head, rollout.input_ids[idx],
                                                   rollout.attention_mask[idx], rollout.prompt_len, cfg.temperature)
            mask = rollout.mask[idx]
            pol = clipped_policy_loss(logprobs, rollout.logprobs[idx], advantages[idx], mask, cfg.cliprange)
            if pol.approx_kl.item() > 1.5 * cfg.target_kl:  # drifted too far from the sampling policy: no step
                return _mean_stats(stats, early_stopped=True)
            vloss, _ = clipped_value_loss(values, rollout.values[idx], returns[idx], mask, cfg.cliprange_value)
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


def ppo_step(state: TrainState, rows: list[dict], reward_fn: RewardFn | None, breakdown_fn: BreakdownFn | None) -> dict[str, Any]:
    """One PPO step on a batch of prompt rows: sample, score, reward, GAE, update. Returns the log row."""
    cfg = state.rl_cfg
    questions = [row["question"] for row in rows]
    rollout = sample_rollout(state, questions)
    score_rollout(state.policy, state.value_head, rollout, cfg.temperature)
    breakdown, scores = score_responses(questions, rollout.responses, rows, reward_fn, breakdown_fn)
    scores = scores.to(rollout.mask.device)
    kl_coef = state.kl_ctl.value
    rewards, kl = kl_penalty_rewards(scores, rollout.logprobs, rollout.ref_logprobs, rollout.mask, kl_coef)
    advantages, returns = compute_gae(rewards, rollout.values, rollout.mask, cfg.gamma, cfg.lam)
    update = ppo_update(state, rollout, masked_whiten(advantages, rollout.mask), returns)
    seq_kl = kl.sum(1).mean().item()  # KL(pi || ref) of whole responses, as Ziegler et al. control it
    state.kl_ctl.update(seq_kl, n_steps=len(rows))
    return {
        "reward_mean": scores.mean().item(), "reward_std": scores.std(unbiased=False).item(),
        **breakdown_means(breakdown), "kl": seq_kl, "kl_coef": kl_coef,
        "entropy": masked_mean(rollout.entropy, rollout.mask).item(),
        "policy_loss": update["policy_loss"], "value_loss": update["value_loss"], "clip_frac": update["clip_frac"],
        "response_len": rollout.mask.sum(1).mean().item(), "approx_kl": update["approx_kl"],
        "updates": update["updates"], "sample": rollout.responses[0],
    }


def score_responses(questions: list[str], responses: list[str], metas: list[dict], reward_fn: RewardFn | None,
                    breakdown_fn: BreakdownFn | None) -> tuple[list[dict], torch.Tensor]:
    """Scores from the breakdown rows' `total` when there is a breakdown callable (one scoring pass), else reward_fn."""
    breakdown = breakdown_fn(questions, responses, metas) if breakdown_fn else []
    scores = [row["total"] for row in breakdown] if breakdown_fn else reward_fn(questions, responses, metas)
    if len(scores) != len(responses):
        raise ValueError(f"the reward function returned {len(scores)} scores for {len(responses)} responses")
    return breakdown, torch.tensor([float(s) for s in scores], dtype=torch.float32)


def breakdown_means(breakdown: list[dict]) -> dict[str, float | None]:
    """rules_mean, teacher_mean (None while the teacher is off) and how many responses had a violation."""
    if not breakdown:
        return {"rules_mean": None, "teacher_mean": None, "violations": None}
    rules = [b["rule_score"] for b in breakdown if b.get("rule_score") is not None]
    teacher = [b["teacher_score"] for b in breakdown if b.get("teacher_score") is not None]
    return {"rules_mean": sum(rules) / len(rules) if rules else None,
            "teacher_mean": sum(teacher) / len(teacher) if teacher else None,
            "violations": sum(1 for b in breakdown if b.get("violation", bool(b.get("violations"))))}


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
    """Train a PPO LoRA on base (+ merged SFT adapter), resuming from out_dir/checkpoints; save out_dir/final_model."""
    if reward_fn is None and breakdown_fn is None:
        raise ValueError("PPO needs a reward_fn or a breakdown_fn (whose rows carry `total`)")
    rows = _load_prompts(Path(prompts_path), rl_cfg.prompts)
    total = rl_cfg.steps if rl_cfg.steps is not None else math.ceil(len(rows) / rl_cfg.batch_size)
    ckpt_dir, final_dir = Path(out_dir) / "checkpoints", Path(out_dir) / "final_model"
    csv_path = ckpt_dir / "rewards.csv"
    checkpoint = latest_checkpoint(ckpt_dir)
    state = build_state(Path(base_path), sft_adapter, rl_cfg, model_cfg, checkpoint)
    start = state.step
    if start > total:
        log.warning("checkpoint step %d is past rl.steps=%d: saving it as the final model without training", start, total)
    keep_rows(csv_path, upto_step=start)  # steps logged after the last checkpoint are redone
    with _file_log(ckpt_dir / "training.log"):
        log.info("PPO on %d prompts: steps %d..%d, batch %d, lr %.3g, target KL %.3g, kl_coef %.4g%s", len(rows),
                 start + 1, total, rl_cfg.batch_size, rl_cfg.learning_rate, rl_cfg.target_kl, state.kl_ctl.value,
                 f", resumed from {checkpoint}" if checkpoint else "")
        for step in tqdm(range(start + 1, total + 1), initial=start, total=total, desc="ppo", unit="step"):
            batch = [rows[i] for i in batch_indices(len(rows), rl_cfg.batch_size, step, rl_cfg.seed)]
            row = ppo_step(state, batch, reward_fn, breakdown_fn)
            state.step = step
            append_row(csv_path, {"step": step, **row})
            log.info("step %d reward %.4f+-%.4f kl %.4f kl_coef %.4g entropy %.3f approx_kl %.4f updates %d len %.1f | %r",
                     step, row["reward_mean"], row["reward_std"], row["kl"], row["kl_coef"], row["entropy"],
                     row["approx_kl"], row["updates"], row["response_len"], row["sample"][:80])
            if step % rl_cfg.save_every == 0 or step == total:
                save_checkpoint(state, ckpt_dir / f"step-{step}")
        plot_curves(csv_path, ckpt_dir / "curves.png")
        save_final(state, final_dir, {"algorithm": "ppo", "steps": total, "resumed_from_step": start,
                                      "prompts": len(rows), "base": str(base_path),
                                      "sft_adapter": str(sft_adapter) if sft_adapter else None,
                                      "config": rl_cfg.model_dump(mode="json"),
                                      "model": model_cfg.model_dump(mode="json"), **(metadata or {})})
    curve = read_rows(csv_path)
    return {"steps": total, "resumed_from_step": start, "final_model": str(final_dir), "rewards_csv": str(csv_path),
            "curves_png": str(ckpt_dir / "curves.png"), "reward_first": curve[0]["reward_mean"] if curve else None,
            "reward_last": curve[-1]["reward_mean"] if curve else None}


def build_state(base_path: Path, sft_adapter: Path | None, rl_cfg: RLConfig, model_cfg: ModelConfig,
                checkpoint: Path | None) -> TrainState:
    """Merged SFT model + RL LoRA (fresh and seeded, or the checkpoint's), value head, AdamW, KL controller."""
    from peft import PeftModel, get_peft_model

    max_prompt_tokens = model_cfg.max_seq_len - rl_cfg.max_new_tokens
    if max_prompt_tokens < 8 or rl_cfg.temperature <= 0:
        raise ValueError(f"need model.max_seq_len ({model_cfg.max_seq_len}) > rl.max_new_tokens "
                         f"({rl_cfg.max_new_tokens}) + 8 and rl.temperature > 0 (got {rl_cfg.temperature})")
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


def save_checkpoint(state: TrainState, path: Path) -> None:
    """LoRA adapter, value head, optimizer, KL controller, step and RNG state; trainer_state.json is written last."""
    path.mkdir(parents=True, exist_ok=True)
    state.policy.save_pretrained(str(path), save_embedding_layers=False)
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save({"value_head": state.value_head.state_dict(), "optimizer": state.optimizer.state_dict(), "rng": rng},
               path / "trainer.pt")
    write_json(path / "trainer_state.json", {"step": state.step, "kl_ctl": state.kl_ctl.state_dict(),
                                             "rl_config": state.rl_cfg.model_dump(mode="json")})


def load_checkpoint(state: TrainState, path: Path) -> None:
    """Restore what save_checkpoint wrote (the adapter itself is loaded with the model)."""
    saved = torch.load(path / "trainer.pt", map_location=state.policy.device, weights_only=True)
    state.value_head.load_state_dict(saved["value_head"])
    state.optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["rng"]["cpu"].cpu())
    if "cuda" in saved["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in saved["rng"]["cuda"]])
    meta = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    state.step = int(meta["step"])
    state.kl_ctl.load_state_dict(meta["kl_ctl"])
    now = state.rl_cfg.model_dump(mode="json")
    changed = sorted(k for k, v in meta.get("rl_config", now).items() if k not in RESUMABLE_CHANGES and now.get(k) != v)
    if changed:
        log.warning("resuming %s although rl settings changed since (%s); delete %s to start over",
                    path, ", ".join(changed), path.parent)


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The complete step-N checkpoint with the largest N, or None."""
    done = [p for p in ckpt_dir.glob("step-*") if re.fullmatch(r"step-\d+", p.name) and (p / "trainer_state.json").is_file()]
    return max(done, key=lambda p: int(p.name.split("-")[1]), default=None)


def save_final(state: TrainState, path: Path, metadata: dict[str, Any]) -> None:
    """Merge the RL LoRA into the weights and save a plain model + tokenizer + metadata.json."""
    if path.exists():
        shutil.rmtree(path)
    merged = state.policy.merge_and_unload()
    merged.save_pretrained(str(path))
    state.tokenizer.save_pretrained(str(path))
    write_json(path / "metadata.json", metadata)


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one step to rewards.csv (header on first write); floats to 6 significant digits."""
    new = not path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def read_rows(path: Path) -> list[dict[str, Any]]:
    """rewards.csv as dicts, numbers as floats (step as int), blanks as None."""
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as fh:
        return [{k: (int(v) if k == "step" else float(v) if v else None) for k, v in r.items()} for r in csv.DictReader(fh)]


def keep_rows(path: Path, upto_step: int) -> None:
    """Drop rows of steps after upto_step, so a resumed run never logs a step twice."""
    if not path.is_file():
        return
    rows = [r for r in read_rows(path) if r["step"] <= upto_step]
    path.unlink()
    for r in rows:
        append_row(path, {k: ("" if v is None else v) for k, v in r.items()})


def plot_curves(csv_path: Path, png_path: Path) -> None:
    """Reward (mean +- std) and KL / KL coefficient per step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_rows(csv_path)
    steps = [r["step"] for r in rows]
    fig, (ax_r, ax_k) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    mean = [r["reward_mean"] for r in rows]
    std = [r["reward_std"] for r in rows]
    ax_r.plot(steps, mean, label="reward")
    ax_r.fill_between(steps, [m - s for m, s in zip(mean, std, strict=True)], [m + s for m, s in zip(mean, std, strict=True)], alpha=0.2)
    ax_r.set_ylabel("reward")
    ax_k.plot(steps, [r["kl"] for r in rows], label="KL(policy || ref)", color="tab:red")
    ax_k.set_ylabel("KL (nats / response)")
    ax_c = ax_k.twinx()
    ax_c.plot(steps, [r["kl_coef"] for r in rows], color="tab:gray", linestyle="--", label="kl_coef")
    ax_c.set_ylabel("kl_coef")
    ax_k.set_xlabel("PPO step")
    fig.suptitle("PPO: reward and KL")
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> list[int]:
    """Prompt indices of 1-based step: consecutive slices of a seeded permutation, a fresh one per pass."""
    out = []
    for j in range((step - 1) * batch_size, step * batch_size):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + j // n))
        out.append(int(perm[j % n]))
    return out


def _load_prompts(path: Path, limit: int | None) -> list[dict]:
    rows = read_jsonl(path)
    for i, row in enumerate(rows, 1):
        if not isinstance(row.get("question"), str) or not row["question"].strip():
            raise ValueError(f"{path}: row {i} (id {row.get('id')!r}) has no 'question' text; re-run sample_rl_prompts")
    if not rows:
        raise ValueError(f"{path} holds no RL prompts; re-run sample_rl_prompts")
    return rows[:limit] if limit else rows


class _file_log:  # noqa: N801 - used like open()
    """Copy this module's INFO records to training.log (appending) for the duration of a run."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handler = logging.FileHandler(self.path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.level = log.level
        log.setLevel(min(log.getEffectiveLevel(), logging.INFO))
        log.addHandler(self.handler)

    def __exit__(self, *exc: object) -> None:
        log.removeHandler(self.handler)
        log.setLevel(self.level)
        self.handler.close()


@task(cache_policy=STAGE_CACHE, persist_result=True)
def ppo_task(
    prompts_path: Path,
    base_path: Path,
    sft_adapter: Path | None,
    rl_cfg: RLConfig,
    model_cfg: ModelConfig,
    workdir: Workdir,
    reward_fn: RewardFn | None,
    breakdown_fn: BreakdownFn | None = None,
    teacher_enabled: bool = False,
) -> dict[str, Any]:
    """Prefect stage: PPO into <workdir>/models/rl (checkpoints, rewards.csv, curves.png, final_model)."""
    logger = get_run_logger()
    try:
        summary = train_ppo(prompts_path, base_path, sft_adapter, workdir.rl_checkpoints.parent, rl_cfg, model_cfg,
                            reward_fn, breakdown_fn, metadata={"teacher_enabled": teacher_enabled})
    except (OSError, ValueError) as exc:
        raise StageFailed("rl", exc, "fix the input named above and re-run; training resumes from the last checkpoint") from exc
    logger.info("PPO: %d steps (resumed from %d), reward %s -> %s; model at %s", summary["steps"],
                summary["resumed_from_step"], summary["reward_first"], summary["reward_last"], summary["final_model"])
    return summary
